"""Authentication hardening on top of Flask-AppBuilder.

One module per idea: ``passwords`` (the password policy), ``lockout`` (account lockout after
failed logins), ``limits`` (login rate limits), ``sessions`` (lifetime, idle timeout and
invalidation), ``headers`` (CSP and security headers), ``redirects`` (safe redirect targets),
``api_keys`` (per-user API keys), ``security_manager`` (FAB hooks that tie them together) and
``views`` (the "API keys" page). ``register_auth`` wires them into an app.
"""
from __future__ import annotations

from flask import Flask

from ..config import Settings


def flask_settings(settings: Settings) -> dict:
    """Flask / Flask-AppBuilder / Flask-Limiter configuration for the hardening settings."""
    from datetime import timedelta

    from .passwords import fab_password_validator

    secure = settings.cookies_secure
    return {
        "SESSION_COOKIE_SECURE": secure,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": secure,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "PERMANENT_SESSION_LIFETIME": timedelta(seconds=settings.session_lifetime_seconds),
        "SESSION_REFRESH_EACH_REQUEST": False,
        "AUTH_USER_REGISTRATION": False,
        "FAB_PASSWORD_COMPLEXITY_ENABLED": True,
        "FAB_PASSWORD_COMPLEXITY_VALIDATOR": fab_password_validator,
        "FAB_API_KEY_ENABLED": False,  # crmkit's own API keys (auth.api_keys) replace FAB's
        # Flask-Limiter: no global limits; only the login endpoints are limited (auth.limits).
        "RATELIMIT_ENABLED": True,
        "AUTH_RATE_LIMITED": False,
        "RATELIMIT_STORAGE_URI": settings.redis_url or "memory://",
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "RATELIMIT_HEADERS_ENABLED": True,
    }


def register_auth(app: Flask, settings: Settings) -> None:
    """Install the hardening hooks on a created app (after Flask-AppBuilder registered its views)."""
    from . import headers, limits, lockout, redirects, sessions
    from .views import auth_blueprint

    headers.init_app(app, settings)
    sessions.init_app(app, settings)
    redirects.init_app(app)
    limits.init_app(app, settings)
    lockout.init_app(app, settings)
    app.register_blueprint(auth_blueprint)
