"""The runtime's error types. Each carries what a user needs to fix the problem."""
from __future__ import annotations


class CrmkitError(Exception):
    """Base class; ``code`` is stable and used in API error bodies."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class DefinitionError(CrmkitError):
    """A metadata definition is invalid. ``problems`` lists (file, pointer, message)."""

    code = "invalid_definition"

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems
        lines = [f"{f}: {p or '/'}: {m}" for f, p, m in problems]
        super().__init__(
            "Invalid definition:\n  " + "\n  ".join(lines),
            details={"problems": [{"file": f, "pointer": p, "message": m} for f, p, m in problems]},
        )


class ValidationFailed(CrmkitError):
    """Record input failed validation; ``field_errors`` maps field name → messages."""

    code = "validation_failed"
    status = 422

    def __init__(self, field_errors: dict, message: str = "Some fields are not valid; fix them and submit again."):
        self.field_errors = field_errors
        super().__init__(message, details={"fields": field_errors})


class StaleRecord(CrmkitError):
    code = "stale_record"
    status = 409


class RecordNotFound(CrmkitError):
    code = "not_found"
    status = 404


class PermissionDenied(CrmkitError):
    code = "forbidden"
    status = 403


class BadQuery(CrmkitError):
    """A filter, sort, search or cursor the query service cannot accept."""

    code = "bad_query"


class PlanRefused(CrmkitError):
    """A schema plan has destructive or lossy steps that were not confirmed."""

    code = "plan_refused"
    status = 409
