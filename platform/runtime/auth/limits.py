"""Rate limits on the two login endpoints: the form (``/login/``) and ``/api/v1/security/login``.

Flask-Limiter (the instance Flask-AppBuilder creates) with storage ``CRMKIT_REDIS_URL`` when
set, else process memory. One limit, ``CRMKIT_LOGIN_RATE_LIMIT`` (default 10 per minute), is
shared by both endpoints and keyed by the client address. Only failed attempts use it up
(the security manager marks them), so people who type their password right are never held
up, while a guesser is stopped after a few tries; account lockout (``lockout``) covers
guessing spread over many addresses.
"""
from __future__ import annotations

from flask import Flask, g

from ..config import Settings
from ..i18n_text import text

LIMIT_SCOPE = "crmkit-login"
MSG_TOO_MANY = text("Too many failed logins from your address. Wait a minute, then try again.",
                    "您所在地址的登录失败次数过多，请稍等一分钟后再试。")


def failed_login(_response) -> bool:
    return bool(g.get("crmkit_login_failed"))


def _message() -> str:
    from ..web.i18n import current_locale

    return MSG_TOO_MANY.get(current_locale())


def init_app(app: Flask, settings: Settings) -> None:
    from flask_appbuilder.security.api import SecurityApi

    sm = app.appbuilder.sm  # type: ignore[attr-defined]  # Flask-AppBuilder sets app.appbuilder at run time
    limit = sm.limiter.shared_limit(settings.login_rate_limit, scope=LIMIT_SCOPE, methods=["POST"],
                                    deduct_when=failed_login, error_message=_message)
    limit(sm.auth_view.blueprint)
    for view in app.appbuilder.baseviews:  # type: ignore[attr-defined]  # Flask-AppBuilder sets app.appbuilder at run time
        if isinstance(view, SecurityApi):
            limit(view.blueprint)
