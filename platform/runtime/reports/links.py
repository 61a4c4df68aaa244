"""From a drill-down cell to the record list: the list page's own filter parameters (``ff``/``fo``/``fv``),
describing exactly the rows the cell counted, or None when the list page cannot express them."""
from __future__ import annotations

import datetime as dt
from typing import Any

from ..actor import Actor
from ..meta.model import ReportDef, ReportGroup
from ..meta.reports import resolve_path
from ..query.aggregate import GroupSpec, MeasureSpec
from ..query.filters import SYSTEM_FIELDS
from .buckets import bucket_range
from .runner import key_from_json, prompt_filters

NOT_EXPRESSIBLE = None


def _flat(tree: Any) -> list[dict] | None:
    """A tree of nested ``and``s flattened into conditions; None when it holds an ``or``."""
    if "and" in tree:
        out = []
        for part in tree["and"]:
            sub = _flat(part)
            if sub is None:
                return None
            out += sub
        return out
    if "or" in tree:
        return None
    return [dict(tree)]


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return "" if value is None else str(value)


def group_conditions(services, actor: Actor, report: ReportDef, g: ReportGroup, key: Any) -> list[dict] | None:
    catalog = services.store.catalog()
    entity = catalog.entity(report.source)
    p = resolve_path(catalog.entities, entity, g.field, catalog.field_types)
    if p.steps:
        if key is None:
            return NOT_EXPRESSIBLE  # "empty" also covers rows whose link is empty or out of scope: no single list filter
        first = p.steps[0].field.name
        ids = services.queries.aggregate(report.source, actor, groups=[GroupSpec(first)], measures=[MeasureSpec("n", "count")],
                                         keys_equal=[(GroupSpec(g.field, g.bucket), key_from_json(p, g, key))])
        return [{"field": first, "op": "in", "value": sorted(r["keys"][0] for r in ids.rows if r["keys"][0] is not None) or [0]}]
    name = p.field.name
    if name not in entity.field_map and name not in SYSTEM_FIELDS:
        return NOT_EXPRESSIBLE  # e.g. org_unit_id: the list page does not filter on it
    if key is None:
        return [{"field": name, "op": "is_empty", "value": None}]
    if g.bucket:
        start, end = bucket_range(g.bucket, key)
        if p.field.type == "date":
            return [{"field": name, "op": "between", "value": [start.isoformat(), (end - dt.timedelta(days=1)).isoformat()]}]
        return [{"field": name, "op": "gte", "value": f"{start.isoformat()} 00:00"}, {"field": name, "op": "lt", "value": f"{end.isoformat()} 00:00"}]
    return [{"field": name, "op": "eq", "value": key}]


def record_list_params(services, actor: Actor, report: ReportDef, params: dict, drill: list, column_key: Any = ...) -> dict | None:
    """``{"ff": [...], "fo": [...], "fv": [...]}`` for ``/e/<source>/``, or None when no list filter says it exactly."""
    conditions: list[dict] = []
    if report.filter:
        flat = _flat(dict(report.filter))
        if flat is None:
            return NOT_EXPRESSIBLE
        conditions += flat
    parts, _, _ = prompt_filters(services, report, params)
    for part in parts:
        conditions += _flat(part) or []
    pairs = list(zip(report.groups, drill))
    if column_key is not ... and report.columns is not None:
        pairs.append((report.columns, column_key))
    for g, key in pairs:
        found = group_conditions(services, actor, report, g, key)
        if found is None:
            return NOT_EXPRESSIBLE
        conditions += found
    return {"ff": [c["field"] for c in conditions], "fo": [c["op"] for c in conditions], "fv": [_text(c.get("value")) for c in conditions]}
