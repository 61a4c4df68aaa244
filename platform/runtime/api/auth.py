"""The acting user of an API request: a bearer token (an API key ``ck_…`` or a JWT), or the
browser session plus CSRF.

A request carrying an ``Authorization`` header is token-authenticated and never looks at
cookies. Without it the session cookie counts, and every state-changing method must
carry a valid CSRF token in ``X-CSRFToken`` (the same token the web pages embed).
"""
from __future__ import annotations

from flask import current_app, request
from flask_jwt_extended import get_current_user, verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTExtendedException
from flask_wtf.csrf import validate_csrf
from jwt.exceptions import PyJWTError
from wtforms.validators import ValidationError

from ..actor import Actor
from ..auth.api_keys import looks_like_key, user_for_key
from ..web.actors import actor_for_user
from ..web.i18n import current_locale
from .errors import CsrfFailed, NotAuthenticated

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADERS = ("X-CSRFToken", "X-CSRF-Token")
LOGIN_HINT = ("Log in with POST /api/v1/security/login and send the access token as 'Authorization: Bearer <token>', "
              "or send an API key (created on the 'API keys' page) as 'Authorization: Bearer ck_…'.")
BEARER = "bearer "


def request_actor() -> Actor:
    """Resolve the actor or raise NotAuthenticated / CsrfFailed."""
    if "Authorization" in request.headers:
        user = _token_user()
    else:
        user = _session_user()
        if user is not None and request.method not in SAFE_METHODS:
            _check_csrf()
    actor = actor_for_user(user, current_locale())
    if actor is None:
        raise NotAuthenticated(f"You are not logged in. {LOGIN_HINT}")
    return actor


def _token_user():
    header = request.headers.get("Authorization", "")
    token = header[len(BEARER):].strip() if header.lower().startswith(BEARER) else ""
    if looks_like_key(token):
        return _api_key_user(token)
    try:
        verify_jwt_in_request()
        return get_current_user()
    except (JWTExtendedException, PyJWTError) as exc:
        raise NotAuthenticated(f"The access token was not accepted ({exc}). {LOGIN_HINT}") from None


def _api_key_user(token: str):
    sm = current_app.appbuilder.sm  # type: ignore[attr-defined]  # Flask-AppBuilder sets app.appbuilder at run time
    user = user_for_key(sm.session, sm.user_model, token)
    if user is None:
        raise NotAuthenticated("The API key was not accepted: it is unknown, revoked or expired, or its user is inactive. "
                               "Create a new key on the 'API keys' page.")
    return user


def _session_user():
    from flask_login import current_user

    return current_user if getattr(current_user, "is_authenticated", False) else None


def _check_csrf() -> None:
    token = next((request.headers[h] for h in CSRF_HEADERS if request.headers.get(h)), None)
    try:
        validate_csrf(token)
    except ValidationError as exc:
        raise CsrfFailed(
            f"{exc} Cookie-authenticated changes need the page's CSRF token in the X-CSRFToken header; "
            "scripts should use a bearer token instead."
        ) from None
