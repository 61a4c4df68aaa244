"""Records → JSON: each field through its type's ``to_json`` (decimals as strings, dates ISO; masked values as their text)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from ..meta.catalog import Catalog
from ..meta.model import EntityDef
from ..query.service import Page


def record_json(catalog: Catalog, entity: EntityDef, row: dict) -> dict:
    """System columns, the readable fields present in ``row``, child rows and ``_labels``."""
    fields = entity.field_map
    out: dict[str, Any] = {}
    for name, value in row.items():
        f = fields.get(name)
        if name == "_labels":
            out[name] = dict(value)
        elif f is not None and f.type == "child_table":
            child = catalog.entities[f.opt("entity")]
            out[name] = [record_json(catalog, child, r) for r in value or []]
        elif f is not None:
            out[name] = None if value is None else catalog.type_of(f).json_value(f, value)
        else:
            out[name] = plain(value)
    return out


def page_json(catalog: Catalog, entity: EntityDef, page: Page) -> dict:
    return {
        "items": [record_json(catalog, entity, r) for r in page.rows],
        "next_cursor": page.next_cursor,
        "prev_cursor": page.prev_cursor,
        "total": page.total,
        "total_exact": page.total_exact,
    }


def history_json(entries: list[dict]) -> dict:
    return {"items": [{k: plain(v) for k, v in e.items()} for e in entries]}


def plain(value: Any) -> Any:
    """System values (ids, versions, timestamps) as JSON."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value
