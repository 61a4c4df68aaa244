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


class LinkResolver:
    """Spreadsheets name linked records by title ("金卡"), not by id. A link cell that is not a plain id is looked up
    by the target's title field through the query service (so the importer's row scope applies), once per value."""

    def __init__(self, queries, catalog, actor):
        self.queries, self.catalog, self.actor = queries, catalog, actor
        self.cache: dict[tuple[str, str], int] = {}

    def __call__(self, f: FieldDef, raw: Any) -> Any:
        text_value = "" if raw is None else str(raw).strip()
        if f.type != "link" or text_value == "" or text_value.isdigit() or (isinstance(raw, (int, float)) and not isinstance(raw, bool)):
            return None
        from ..i18n_text import text

        target = self.catalog.entities[f.opt("target")]
        key = (target.key, text_value)
        if key not in self.cache:
            page = self.queries.list(target.key, self.actor, filter={"field": target.title_field, "op": "eq", "value": text_value},
                                     limit=2, count="none", labels=False)
            if len(page.rows) != 1:
                raise ValueError(text("There is no single {entity} named '{name}'.", "找不到唯一一个名为“{name}”的{entity}。",
                                      entity=target.label, name=text_value))
            self.cache[key] = page.rows[0]["id"]
        return self.cache[key]
