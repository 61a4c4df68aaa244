"""UI strings in zh-CN and English. Labels of user data come from metadata as {zh, en}."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import flask_babel
from flask import has_request_context, session

SUPPORTED = ("zh", "en")


@lru_cache(maxsize=1)
def messages() -> dict[str, dict[str, str]]:
    return json.loads(resources.files(__package__).joinpath("messages", "messages.json").read_text("utf-8"))


def current_locale(default: str = "zh") -> str:
    if has_request_context():
        chosen = session.get("locale")
        if chosen in SUPPORTED:
            return chosen
        try:
            loc = str(flask_babel.get_locale() or "")
        except Exception:
            loc = ""
        return "zh" if loc.startswith("zh") else ("en" if loc.startswith("en") else default)
    return default


def translate(key: str, locale: str | None = None, **params) -> str:
    entry = messages().get(key)
    if entry is None:
        return key
    text = entry.get(locale or current_locale()) or entry.get("en") or key
    return text.format(**params) if params else text
