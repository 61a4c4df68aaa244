"""A spreadsheet cell → a field value, through the field type's own text parsing (``FieldType.parse_text``).

Cells from XLSX arrive typed: dates as datetimes, numbers as int/float. They are turned into the text a person
would type (a whole float without ".0", a datetime as ISO) so every type parses one way; a plain number in a
date column is an Excel date serial.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from ..meta.model import FieldDef

EXCEL_EPOCH = dt.date(1899, 12, 30)


def cell_value(ft, f: FieldDef, raw: Any) -> Any:
    """Parse one cell; raises ``ValueError`` with a user-facing (bilingual) message."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        raw = "true" if raw else "false"
    elif isinstance(raw, dt.datetime):
        raw = raw.date().isoformat() if f.type == "date" else raw.isoformat()
    elif isinstance(raw, dt.date):
        raw = raw.isoformat()
    elif isinstance(raw, dt.time):
        raw = raw.isoformat()
    elif isinstance(raw, (int, float)):
        if f.type in ("date", "datetime") and 1 <= raw < 2958466:
            day = EXCEL_EPOCH + dt.timedelta(days=int(raw))
            if f.type == "date":
                raw = day.isoformat()
            else:
                secs = round((raw - int(raw)) * 86400)
                raw = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=secs)
                raw = raw.isoformat()
        elif isinstance(raw, float) and raw.is_integer():
            raw = str(int(raw))
        else:
            raw = repr(raw) if isinstance(raw, float) else str(raw)
    elif not isinstance(raw, str):
        raw = str(raw)
    value = ft.parse_text(f, raw)
    if f.type == "date" and isinstance(value, dt.datetime):
        value = value.date()
    return value
