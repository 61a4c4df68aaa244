"""Everything about one data subject as JSON: the record with its child rows, records linking to it,
consent, and the audit entries about it. Administrators only; the export itself is audited."""
from __future__ import annotations

import datetime as dt
from typing import Any

from ..actor import Actor
from ..audit import record_event_now
from ..errors import PermissionDenied
from ..i18n_text import text
from .consent import list_consents

MAX_LINKED = 1000
PAGE = 200
ADMINS_ONLY = text("Only administrators can export or erase a data subject's personal data.", "只有管理员可以导出或擦除数据主体的个人数据。")


def require_privacy_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise PermissionDenied(ADMINS_ONLY)


def export_subject(services, entity_key: str, record_id: Any, actor: Actor) -> dict:
    require_privacy_admin(actor)
    record = services.queries.get(entity_key, record_id, actor)
    rid = record["id"]
    catalog = services.store.catalog()
    linked: dict[str, list[dict]] = {}
    for other in catalog.entities.values():
        if other.is_child or not services.policy.allows(actor, other, "read"):
            continue
        for f in other.fields:
            if f.type == "link" and f.opt("target") == entity_key:
                rows = all_rows(services, other.key, actor, {"field": f.name, "op": "eq", "value": rid})
                if rows:
                    linked[f"{other.key}.{f.name}"] = rows
    audit = [{**_jsonable(e)} for e in services.queries.history(entity_key, rid, actor, limit=10000)]
    out = {
        "subject": {"entity": entity_key, "id": rid},
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "record": _jsonable(record),
        "linked_records": linked,
        "consents": list_consents(services, entity_key, rid, actor),
        "audit": audit,
    }
    record_event_now(services.engine, category="privacy", action="subject_export", actor_id=actor.id, entity=entity_key, record_id=rid,
                     changes={"linked": {k: len(v) for k, v in linked.items()}, "audit_entries": len(audit)})
    return out


def all_rows(services, entity_key: str, actor: Actor, tree: dict) -> list[dict]:
    """Every linking row (up to MAX_LINKED), page by page through the query service."""
    rows: list[dict] = []
    cursor = None
    while len(rows) < MAX_LINKED:
        page = services.queries.list(entity_key, actor, filter=tree, limit=PAGE, cursor=cursor, count="none", labels=False)
        rows += [_jsonable(r) for r in page.rows]
        cursor = page.next_cursor
        if not cursor:
            break
    return rows[:MAX_LINKED]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
