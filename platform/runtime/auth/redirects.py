"""Safe redirect targets: only paths on this site, never another host.

Used for the login ``next`` parameter, the locale switch (the Referer) and the ``next`` of
bulk actions. A target is a local absolute path ("/…") with no scheme, no host, no
backslash, no control or whitespace characters, and not protocol-relative ("//…"), which
browsers would read as another host.
"""
from __future__ import annotations

import unicodedata
from typing import TypeGuard
from urllib.parse import urlsplit

from flask import Flask, redirect, request, url_for


def is_safe_path(target: str | None) -> TypeGuard[str]:
    if not target or not target.startswith("/") or target.startswith("//"):
        return False
    if "\\" in target:
        return False
    if any(unicodedata.category(ch)[0] in ("C", "Z") for ch in target):
        return False  # control, format, separator and space characters: browsers strip or reinterpret them
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def safe_target(candidate: str | None, fallback: str) -> str:
    return candidate if is_safe_path(candidate) else fallback


def local_path_of(url: str | None, host_url: str) -> str | None:
    """The path+query of ``url`` if it points at this site (``host_url`` = "scheme://host/"), else None."""
    if not url:
        return None
    if url.startswith(host_url):
        url = "/" + url[len(host_url):]
    return url if is_safe_path(url) else None


def init_app(app: Flask) -> None:
    """Refuse an unsafe ``next`` on the login page before Flask-AppBuilder sees it."""

    @app.before_request
    def guard_login_next():
        sm = app.appbuilder.sm
        if request.endpoint != sm.auth_view.__class__.__name__ + ".login":
            return None
        target = request.args.get("next")
        if target is None or is_safe_path(target):
            return None
        return redirect(url_for(request.endpoint), 303)
