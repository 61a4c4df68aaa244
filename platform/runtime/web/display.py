"""How one stored value looks on a page: a small ``Cell`` that the ``cell`` macro renders.

Templates never format values themselves; list cells, detail values and the audit
timeline all come through here, so a select is a coloured badge everywhere, a link
shows its record's title, a boolean reads yes/no and money is formatted the same way.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from flask import url_for

from ..fields.choice import option_color, option_label
from ..meta.catalog import Catalog
from ..meta.model import FieldDef
from ..permissions.masking import MaskedText
from ..query.filters import SYSTEM_FIELDS
from .i18n import translate

NUMERIC = {"integer", "decimal", "money", "percent"}


@dataclass(frozen=True)
class Cell:
    kind: str  # empty | text | num | bool | badges | tags | link | files | mono
    text: str = ""
    items: tuple = ()  # badges: (label, colour); tags/files: label
    url: str | None = None
    value: Any = None


EMPTY = Cell("empty")


def field_def(catalog: Catalog, entity, name: str) -> FieldDef | None:
    """An entity field or a system column (created_at, owner_id, ...), by name."""
    return entity.field_map.get(name) or SYSTEM_FIELDS.get(name)


def field_label(catalog: Catalog, entity, name: str, locale: str) -> str:
    f = field_def(catalog, entity, name)
    return f.label.get(locale) if f is not None else name


def cell(catalog: Catalog, f: FieldDef, value: Any, locale: str, label: str | None = None) -> Cell:
    """The rendering of ``value`` of field ``f``; ``label`` is the resolved title for link/user/org unit values."""
    if value is None or value == "" or value == []:
        return EMPTY
    ft = catalog.type_of(f)
    kind = f.type
    if isinstance(value, MaskedText):  # masked: text now, whatever the type (a masked number or yes/no is neither)
        return Cell("mono" if kind in ("sequence", "id_number") else "text", text=str(value))
    if kind == "single_select":
        return Cell("badges", items=((option_label(f, value, locale), option_color(f, value)),))
    if kind == "multi_select":
        return Cell("badges", items=tuple((option_label(f, v, locale), option_color(f, v)) for v in value))
    if kind == "tags":
        return Cell("tags", items=tuple(value))
    if kind == "boolean":
        return Cell("bool", text=translate("yes" if value else "no", locale), value=bool(value))
    if kind == "link":
        target = f.opt("target")
        return Cell("link", text=label or f"#{value}", url=url_for("crmkit_web.entity_detail", entity_key=target, record_id=value))
    if kind in ("user", "org_unit"):
        return Cell("text", text=label or f"#{value}")
    if kind == "attachment":
        return Cell("files", items=tuple(v.get("name", "") if isinstance(v, dict) else str(v) for v in value))
    if kind in ("sequence", "id_number"):
        return Cell("mono", text=str(value))
    if kind in NUMERIC:
        return Cell("num", text=ft.display(f, value, locale))
    if kind == "datetime" and isinstance(value, dt.datetime):
        return Cell("text", text=ft.display(f, value, locale))
    return Cell("text", text=ft.display(f, value, locale))


def row_cell(catalog: Catalog, entity, name: str, row: dict, locale: str) -> Cell:
    """A cell of a list row or a record (rows carry resolved titles in ``_labels``)."""
    f = field_def(catalog, entity, name)
    if f is None:
        return EMPTY
    return cell(catalog, f, row.get(name), locale, (row.get("_labels") or {}).get(name))


def json_cell(catalog: Catalog, f: FieldDef, value: Any, locale: str, labels: dict | None = None) -> Cell:
    """A value as stored in an audit entry (JSON form) rendered like a live value."""
    if value is None or value == "" or value == []:
        return EMPTY
    if f.type == "attachment" or isinstance(value, MaskedText):
        return cell(catalog, f, value, locale)
    try:
        live = catalog.type_of(f)._deserialize(f, value)
    except (ValueError, TypeError):
        return Cell("text", text=str(value))
    label = (labels or {}).get(live) if f.type == "link" else None
    return cell(catalog, f, live, locale, label)
