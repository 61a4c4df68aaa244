"""A spreadsheet cell → a field value, through the field type's own text parsing (``FieldType.parse_text``).

Cells from XLSX arrive typed: dates as datetimes, numbers as int/float. They are turned into the text a person
would type (a whole float without ".0", a datetime as ISO) so every type parses one way; a plain number in a
date column is an Excel date serial.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from marshmallow import ValidationError

from ..fields.base import FieldType, flatten_messages
from ..i18n_text import join, text
from ..meta.model import FieldDef

EXCEL_EPOCH = dt.date(1899, 12, 30)


def cell_text(f: FieldDef, raw: Any) -> str | None:
    """The cell as the text a person would type: None for an empty cell, Excel serials as ISO dates in date columns."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        raw = "true" if raw else "false"
    elif isinstance(raw, dt.datetime):
        raw = raw.date().isoformat() if f.type == "date" else raw.isoformat()
    elif isinstance(raw, (dt.date, dt.time)):
        raw = raw.isoformat()
    elif isinstance(raw, (int, float)):
        if f.type in ("date", "datetime") and 1 <= raw < 2958466:
            day = EXCEL_EPOCH + dt.timedelta(days=int(raw))
            if f.type == "date":
                raw = day.isoformat()
            else:
                secs = round((raw - int(raw)) * 86400)
                raw = (dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=secs)).isoformat()
        elif isinstance(raw, float) and raw.is_integer():
            raw = str(int(raw))
        else:
            raw = repr(raw) if isinstance(raw, float) else str(raw)
    elif not isinstance(raw, str):
        raw = str(raw)
    raw = raw.strip()
    return raw or None


def uses_base_parsing(ft) -> bool:
    """Whether the type parses spreadsheet text exactly as its input validation does (``FieldType.parse_text``)."""
    return type(ft).parse_text is FieldType.parse_text


def cell_value(ft, f: FieldDef, raw: Any, parse=None) -> Any:
    """Parse one cell; raises ``ValueError`` with a user-facing (bilingual) message.

    ``parse(f, text)`` defaults to ``ft.parse_text``; an import passes a ``CellParser`` so marshmallow fields are
    built once per field instead of once per cell."""
    s = cell_text(f, raw)
    if s is None:
        return None
    value = (parse or ft.parse_text)(f, s)
    if f.type == "date" and isinstance(value, dt.datetime):
        value = value.date()
    return value


class CellParser:
    """``FieldType.parse_text`` with each field's marshmallow field built once (types that override ``parse_text``
    keep their own)."""

    def __init__(self, catalog):
        self.catalog = catalog
        self.base = FieldType.parse_text
        self.fields: dict[str, Any] = {}

    def __call__(self, f: FieldDef, raw: str) -> Any:
        ft = self.catalog.type_of(f)
        if type(ft).parse_text is not self.base:
            return ft.parse_text(f, raw)
        s = (raw or "").strip()
        if s == "":
            return None
        field = self.fields.get(f.id)
        if field is None:
            field = self.fields[f.id] = ft.marshmallow_field(f)
        try:
            return field.deserialize(s)
        except ValidationError as exc:
            raise ValueError(join(flatten_messages(exc.messages))) from None


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
