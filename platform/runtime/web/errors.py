"""Error pages for the browser and JSON bodies for the API: never a bare traceback."""
from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, render_template, request
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from ..errors import CrmkitError, ServiceUnavailable
from .i18n import translate

log = logging.getLogger(__name__)


def wants_json() -> bool:
    return request.path.startswith("/api/")


def api_message(exc: HTTPException) -> str:
    """Messages for routing errors on /api/ that say what to do instead."""
    if exc.code == 404:
        return "There is no such API address. The endpoints are listed in /api/v1/openapi.json."
    if exc.code == 405:
        allowed = ", ".join(m for m in (getattr(exc, "valid_methods", None) or []) if m not in ("HEAD", "OPTIONS"))
        return f"{request.method} is not allowed here" + (f"; use {allowed}." if allowed else ".")
    if exc.code == 413:
        return "The request body is too large: JSON bodies may be up to 2 MiB, file uploads up to the configured upload size."
    return exc.description or ""


def api_locale() -> str | None:
    """The API answers in English; ``Accept-Language`` preferring Chinese gets core messages in Chinese."""
    return "zh" if request.accept_languages.best_match(["en", "zh"]) == "zh" else None


def _allow_header(exc: HTTPException) -> dict:
    methods = getattr(exc, "valid_methods", None)
    return {"Allow": ", ".join(methods)} if exc.code == 405 and methods else {}


def database_unreachable(exc: Exception) -> bool:
    """A lost or refused database connection (server restarting, network down, SQLite busy beyond its timeout):
    the transaction was rolled back, so the client may simply try again."""
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def unavailable(exc: ServiceUnavailable):
    """503 without touching the database: the page is standalone (no navigation, which needs the catalog)."""
    log.warning("%s on %s %s", exc.code, request.method, request.path)
    headers = {"Retry-After": "30", "Cache-Control": "no-store"}
    if wants_json():
        return jsonify(exc.to_dict(api_locale())), 503, headers
    # Rendered without context processors: they build navigation from the database, which may be down.
    return current_app.jinja_env.get_template("crmkit/unavailable.html").render(message=exc.message), 503, headers


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CrmkitError)
    def crmkit_error(exc: CrmkitError):
        if isinstance(exc, ServiceUnavailable):
            return unavailable(exc)
        if wants_json():
            return jsonify(exc.to_dict(api_locale())), exc.status
        title = {404: "not_found", 403: "forbidden"}.get(exc.status, "bad_request")
        return render_template("crmkit/error.html", status=exc.status, title=translate(title), message=exc.message,
                               hint=translate(f"{title}_hint") if title != "bad_request" else ""), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if wants_json():
            code = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 400: "bad_request", 401: "unauthorized"}.get(exc.code or 0, "http_error")
            return jsonify({"code": code, "message": api_message(exc)}), exc.code, _allow_header(exc)
        title = {404: "not_found", 403: "forbidden"}.get(exc.code or 0, "bad_request")
        return render_template("crmkit/error.html", status=exc.code, title=translate(title), message=exc.description,
                               hint=translate(f"{title}_hint") if title != "bad_request" else ""), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        if isinstance(exc, HTTPException):
            return http_error(exc)
        if database_unreachable(exc):
            return unavailable(ServiceUnavailable())
        log.exception("unhandled error on %s %s", request.method, request.path)
        if wants_json():
            return jsonify({"code": "internal_error", "message": "The server hit an unexpected error; it has been logged. Try again later."}), 500
        return render_template("crmkit/error.html", status=500, title=translate("error"), message="", hint=translate("error_hint")), 500
