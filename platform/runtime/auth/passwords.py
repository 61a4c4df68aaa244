"""The password policy: at least 8 characters, not a common password, no composition rules.

Applied on every path that sets a password: Flask-AppBuilder's forms (add user, reset a
user's password, change my password) through ``FAB_PASSWORD_COMPLEXITY_VALIDATOR``, and the
security manager's ``add_user`` / ``reset_password`` (the CLI and any code) through
``check_password``.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from flask_appbuilder.exceptions import PasswordComplexityValidationError

from ..i18n_text import Text, text

MIN_LENGTH = 8
MAX_LENGTH = 256  # hashing an unbounded string is a denial-of-service lever
COMMON_LIST = Path(__file__).with_name("common_passwords.txt")


class WeakPassword(ValueError):
    """A password the policy refuses; ``message`` is a bilingual ``Text`` saying what to do."""

    def __init__(self, message: Text):
        super().__init__(message)
        self.message = message


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    lines = COMMON_LIST.read_text("utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def password_problem(password: str | None, username: str | None = None) -> Text | None:
    """Why ``password`` is refused, or None when it is acceptable."""
    password = password or ""
    if len(password) < MIN_LENGTH:
        return text(f"The password must be at least {MIN_LENGTH} characters long; a short phrase is easiest to remember.",
                    f"密码至少需要 {MIN_LENGTH} 个字符，可以用一句好记的短语。")
    if len(password) > MAX_LENGTH:
        return text(f"The password may be at most {MAX_LENGTH} characters long.", f"密码最多 {MAX_LENGTH} 个字符。")
    folded = password.strip().lower()
    if folded in common_passwords():
        return text("This password is on the list of commonly used passwords; choose one that others are unlikely to use.",
                    "该密码属于常见密码，请换一个别人不太可能使用的密码。")
    if username and folded == username.strip().lower():
        return text("The password must not be the same as the username.", "密码不能与用户名相同。")
    return None


def check_password(password: str | None, username: str | None = None) -> None:
    """Raise ``WeakPassword`` when the policy refuses ``password``."""
    problem = password_problem(password, username)
    if problem is not None:
        raise WeakPassword(problem)


def fab_password_validator(password: str) -> None:
    """``FAB_PASSWORD_COMPLEXITY_VALIDATOR``: FAB shows the message next to the password field."""
    from ..web.i18n import current_locale

    problem = password_problem(password)
    if problem is not None:
        raise PasswordComplexityValidationError(problem.get(current_locale()))
