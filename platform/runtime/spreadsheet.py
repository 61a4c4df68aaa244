"""Safe spreadsheet cells for every export (CSV and XLSX, lists and reports).

A spreadsheet runs a cell as a formula when its text starts with ``=``, ``+``, ``-`` or ``@`` (and some read a
leading tab or carriage return the same way), so an exported value like ``=HYPERLINK(...)`` would execute on
the reader's machine. ``neutralise`` prefixes such text with an apostrophe, which spreadsheets show as plain
text; it also looks past leading spaces and control characters, which Excel skips before deciding.

``xlsx_value`` additionally keeps long digit strings (ID numbers, card and phone numbers) as text, so a
spreadsheet neither rounds them to 15 significant digits nor shows them in scientific notation.
Numbers that are numbers (int, Decimal, float) are written as numbers and never prefixed.
"""
from __future__ import annotations

import datetime as dt
import decimal
import re
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_LEADING = re.compile(r"^[\s\x00-\x1f\x7f\u00a0\u3000\ufeff]+")
LONG_DIGITS = re.compile(r"^\d{11,}[\dXx]?$")


def needs_quote(value: str) -> bool:
    if not value:
        return False
    if value.startswith(FORMULA_STARTS):
        return True
    stripped = _LEADING.sub("", value)
    return stripped != value and stripped.startswith(FORMULA_STARTS)


def neutralise(value: str) -> str:
    """Text a spreadsheet would evaluate gets a leading apostrophe; anything else is returned unchanged."""
    return "'" + value if needs_quote(value) else value


def csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float, decimal.Decimal)):
        return value
    return neutralise(str(value))


def xlsx_value(value: Any) -> tuple[Any, str | None]:
    """(cell value, number format or None). Text stays text: long digit strings get the text format ``@``."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        return value, None
    if isinstance(value, (int, float, decimal.Decimal)):
        return value, None
    if isinstance(value, (dt.date, dt.datetime)):
        return (value.replace(tzinfo=None) if isinstance(value, dt.datetime) else value), None
    text = neutralise(str(value))
    # openpyxl refuses control characters other than tab/newline/CR in cells.
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", "", text)
    return text, ("@" if LONG_DIGITS.match(text) else None)
