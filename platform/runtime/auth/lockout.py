"""Account lockout: after N failed logins in a row an account refuses logins for a while.

The count is Flask-AppBuilder's own ``fail_login_count`` (reset by a successful login or a
password reset); the time of the last failure lives in ``crmkit_user_auth``. While locked,
attempts are refused without checking the password and without extending the lock, so an
attacker cannot keep an account locked forever by guessing. After the lock expires a correct
password logs in; one more wrong one locks again.
"""
from __future__ import annotations

import datetime as dt

from flask import Flask, g, jsonify, request

from ..config import Settings
from .user_state import last_failed_at, upsert, utcnow

API_LOGIN_PATH = "/api/v1/security/login"


def is_locked(db, user, *, threshold: int, lock_seconds: int, now: dt.datetime | None = None) -> bool:
    if (user.fail_login_count or 0) < threshold:
        return False
    failed = last_failed_at(db, user.id)
    return failed is not None and (now or utcnow()) - failed < dt.timedelta(seconds=lock_seconds)


def note_failure(db, user_id: int, now: dt.datetime | None = None) -> None:
    upsert(db, user_id, last_failed_at=now or utcnow())


def clear(db, user_id: int) -> None:
    upsert(db, user_id, last_failed_at=None)


def init_app(app: Flask, settings: Settings) -> None:
    """The API login says why a locked account is refused (FAB's own answer is a bare "Not authorized")."""

    @app.after_request
    def explain_locked_api_login(response):
        if request.path == API_LOGIN_PATH and response.status_code == 401 and g.get("crmkit_login_locked"):
            from ..web.i18n import current_locale
            from .security_manager import MSG_LOCKED

            message = MSG_LOCKED.format(minutes=max(1, settings.login_lockout_seconds // 60))
            locked = jsonify({"code": "account_locked", "message": message.get(current_locale())})
            locked.status_code = 401
            return locked
        return response
