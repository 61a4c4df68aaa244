"""Errors of the expression language. Every message is bilingual; compile errors carry the 0-based
character position in the source so an editor can point at it."""
from __future__ import annotations

from ..errors import CrmkitError
from ..i18n_text import Text


class ExpressionError(CrmkitError):
    """A bad expression (compile time) or an evaluation that exceeded a limit (run time)."""

    code = "bad_expression"

    def __init__(self, message: Text | str, position: int | None = None):
        super().__init__(message, details={"position": position} if position is not None else None)
        self.position = position

    def __str__(self) -> str:
        return str(self.message)


class NotSqlCompilable(Exception):
    """This expression cannot be computed by the database (the caller evaluates it in Python instead)."""

    def __init__(self, message: Text | str, position: int | None = None):
        super().__init__(message)
        self.message = message
        self.position = position
