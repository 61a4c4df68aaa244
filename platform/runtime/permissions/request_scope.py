"""The per-request object the policy keeps its rules on, so the stamp is read once per request."""
from __future__ import annotations

from typing import Any


def flask_request_scope() -> Any:
    """Flask's ``g`` inside a request, else None (CLI and background work check the stamp on every call)."""
    from flask import g, has_request_context

    return g._get_current_object() if has_request_context() else None
