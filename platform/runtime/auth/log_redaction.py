"""Keep personal numbers out of logs.

Flask-AppBuilder logs the attempted user name of a failed login, and in China people log in with their mobile
number; a traceback can quote a value too. Records from the loggers below have mainland mobile numbers and
resident ID numbers masked before any handler sees them (``138****5678``, ``110105********002X``).
"""
from __future__ import annotations

import logging
import re

MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[0-9Xx])(?![0-9A-Za-z])")
LOGGERS = ("flask_appbuilder", "flask_appbuilder.security.manager", "flask_appbuilder.security.sqla.manager",
           "crmkit.runtime.web.errors", "crmkit.runtime.web.app", "werkzeug", "flask.app")


def redact(text: str) -> str:
    return MOBILE.sub(r"\1****\2", ID_NUMBER.sub(r"\1********\2", text))


class PersonalNumberFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # Handlers reuse exc_text when it is set, so the traceback they print is the redacted one.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def install_log_redaction() -> None:
    """Attach the filter once per logger (idempotent: apps are created many times in one process)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, PersonalNumberFilter) for f in logger.filters):
            logger.addFilter(PersonalNumberFilter())
