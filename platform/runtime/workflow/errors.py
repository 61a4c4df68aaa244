"""Errors of the workflow engine."""
from __future__ import annotations

from ..errors import CrmkitError


class TransitionNotAvailable(CrmkitError):
    """The transition does not apply to the record as it is now (another state, waiting for approval, decided)."""

    code = "transition_not_available"
    status = 409
