"""Browser sessions: an absolute lifetime, an idle timeout, and invalidation.

At login the session gets a stamp: the user id, a fingerprint, the login time and the last
activity time. The fingerprint is an HMAC (keyed by the app's secret) of the user's password
hash and their ``session_version``, so changing the password or pressing "sign out
everywhere" (which bumps the version) ends every existing session; a deactivated user is
refused by Flask-AppBuilder's user loader. The check runs on every request and costs no SQL:
the security manager loads the session version in the same statement as the user.
JWTs carry the same fingerprint (``security_manager``), so they end on a password change too.
"""
from __future__ import annotations

import hashlib
import hmac
import time

from flask import Flask, current_app, flash, g, jsonify, make_response, redirect, request, session, url_for
from flask_login import current_user, logout_user, user_logged_in

from ..config import Settings
from ..i18n_text import text
from .user_state import session_version

SESSION_KEY = "_crmkit_auth"
TOUCH_EVERY_SECONDS = 60  # the last-activity time is rewritten at most once a minute
STATIC_SUFFIX = "static"

MSG_EXPIRED = text("Your session has ended; log in again to continue.", "会话已结束，请重新登录后继续。")
MSG_IDLE = text("You were logged out after a period of inactivity; log in again to continue.",
                "由于长时间未操作，您已退出登录，请重新登录后继续。")
MSG_INVALID = text("Your session is no longer valid (the password was changed or you signed out everywhere); log in again.",
                   "会话已失效（密码已更改或已在所有设备退出），请重新登录。")


def fingerprint(user, version: int, secret: str | None = None) -> str:
    secret = secret or current_app.config["SECRET_KEY"]
    message = f"{user.id}:{user.password or ''}:{version}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def current_session_version(user) -> int:
    """The version loaded with the user this request, or one query when it was not."""
    cached = g.get("crmkit_session_version")
    if cached is not None and cached[0] == user.id:
        return cached[1]
    version = session_version(current_app.appbuilder.sm.session, user.id)  # type: ignore[attr-defined]  # Flask-AppBuilder sets app.appbuilder at run time
    g.crmkit_session_version = (user.id, version)
    return version


def stamp(user, now: float | None = None) -> None:
    now = time.time() if now is None else now
    session[SESSION_KEY] = {"uid": user.id, "fp": fingerprint(user, current_session_version(user)), "at": now, "seen": now}
    session.permanent = True  # the cookie expires with PERMANENT_SESSION_LIFETIME


def _on_login(sender, user, **_):
    stamp(user)


def stamp_problem(user, settings: Settings, now: float) -> str | None:
    """Why the current session may not continue: "invalid", "expired", "idle" or None."""
    data = session.get(SESSION_KEY)
    if not isinstance(data, dict) or data.get("uid") != user.id:
        return "invalid"
    if not hmac.compare_digest(str(data.get("fp", "")), fingerprint(user, current_session_version(user))):
        return "invalid"
    try:
        at, seen = float(data["at"]), float(data["seen"])
    except (KeyError, TypeError, ValueError):
        return "invalid"
    if now - at > settings.session_lifetime_seconds:
        return "expired"
    if now - seen > settings.session_idle_seconds:
        return "idle"
    return None


def _login_endpoint() -> str:
    return current_app.appbuilder.sm.auth_view.__class__.__name__ + ".login"  # type: ignore[attr-defined]  # Flask-AppBuilder sets app.appbuilder at run time


def _end_session(reason: str):
    message = {"expired": MSG_EXPIRED, "idle": MSG_IDLE}.get(reason, MSG_INVALID)
    logout_user()
    session.pop(SESSION_KEY, None)
    if request.endpoint == _login_endpoint():
        return None  # let the login form (or the login POST) proceed anonymously
    if request.path.startswith("/api/"):
        return make_response(jsonify({"code": "session_ended", "message": str(message)}), 401)
    from ..web.i18n import current_locale

    flash(message.get(current_locale()), "warning")
    target = url_for(_login_endpoint(), next=request.full_path if request.method == "GET" else None)
    if request.headers.get("HX-Request"):
        resp = make_response("", 200)
        resp.headers["HX-Redirect"] = target
        return resp
    return redirect(target)


def init_app(app: Flask, settings: Settings) -> None:
    user_logged_in.connect(_on_login, app)

    @app.before_request
    def enforce_session_rules():
        endpoint = request.endpoint or ""
        if endpoint.endswith(STATIC_SUFFIX):
            return None
        if request.path.startswith("/api/") and "Authorization" in request.headers:
            return None  # token calls ignore cookies (api/auth.py)
        if not current_user.is_authenticated:
            session.pop(SESSION_KEY, None)
            return None
        now = time.time()
        problem = stamp_problem(current_user, settings, now)
        if problem is not None:
            return _end_session(problem)
        if now - float(session[SESSION_KEY]["seen"]) >= TOUCH_EVERY_SECONDS:
            session[SESSION_KEY] = {**session[SESSION_KEY], "seen": now}
        return None
