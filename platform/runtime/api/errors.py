"""Error types that only the HTTP API raises; the app's error handlers turn them into JSON."""
from __future__ import annotations

from ..errors import CrmkitError


class NotAuthenticated(CrmkitError):
    code = "unauthorized"
    status = 401


class CsrfFailed(CrmkitError):
    """A cookie-authenticated write without a valid X-CSRFToken header."""

    code = "csrf_failed"
    status = 403


class BadBody(CrmkitError):
    """The request body is not the JSON object the endpoint expects."""

    code = "bad_request"
    status = 400


class UnsupportedMediaType(CrmkitError):
    code = "unsupported_media_type"
    status = 415
