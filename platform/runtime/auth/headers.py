"""Security headers on every response: CSP with a per-request script nonce, and no-store.

Scripts run only from our own origin or inline with this request's nonce (templates call
``csp_nonce()``; Flask-AppBuilder's templates do too). Styles allow inline ``style``
attributes, which the UI uses for colours. Every dynamic response is ``Cache-Control:
no-store``: pages and API bodies carry personal data, so nothing is kept by the browser
or a proxy; only static assets may be cached.
"""
from __future__ import annotations

import secrets

from flask import Flask, g, request

from ..config import Settings

STATIC_SUFFIX = "static"


def csp_nonce() -> str:
    if "crmkit_csp_nonce" not in g:
        g.crmkit_csp_nonce = secrets.token_urlsafe(16)
    return g.crmkit_csp_nonce


def content_security_policy(nonce: str) -> str:
    return "; ".join([
        "default-src 'self'",
        f"script-src 'self' 'nonce-{nonce}'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def security_headers(nonce: str, *, hsts: bool) -> dict[str, str]:
    headers = {
        "Content-Security-Policy": content_security_policy(nonce),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    }
    if hsts:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return headers


def init_app(app: Flask, settings: Settings) -> None:
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    hsts = settings.cookies_secure

    @app.after_request
    def add_security_headers(response):
        for name, value in security_headers(csp_nonce(), hsts=hsts).items():
            response.headers.setdefault(name, value)
        if not (request.endpoint or "").endswith(STATIC_SUFFIX):
            response.headers["Cache-Control"] = "no-store"
            response.headers["Pragma"] = "no-cache"
        return response
