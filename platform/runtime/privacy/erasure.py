"""Erasure: anonymise a data subject's personal fields, and redact those values in the audit log.

The record is changed through the record service like any edit. In the same transaction the
audit entries about the record have their personal values replaced by ``[erased]`` and are flagged
``redacted``; the chain covers each payload through its hash, so it still verifies, and the erasure
entry names every redacted entry so verification can tell a redaction from tampering.
Pending outbox events about the record lose their payload changes too.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from ..actor import Actor
from ..audit import record_event
from ..errors import ValidationFailed
from ..i18n_text import text
from ..meta.model import EntityDef, FieldDef
from ..storage import platform_tables as pt
from .personal import personal_fields
from .subject_export import require_privacy_admin

ERASED = "[erased]"


def erase_subject(services, entity_key: str, record_id: Any, actor: Actor) -> dict:
    """Anonymise the record's personal fields; returns {"fields": [...], "redacted_entries": n}."""
    require_privacy_admin(actor)
    entity = services.store.catalog().entity(entity_key)
    fields = personal_fields(entity)
    if not fields:
        raise ValidationFailed({"_schema": [text("{entity} has no fields marked as personal data, so there is nothing to erase.",
                                                 "{entity}没有标记为个人数据的字段，无需擦除。", entity=entity.label)]})
    current = services.queries.get(entity_key, record_id, actor)
    rid = current["id"]
    values = {f.name: anonymous_value(f, rid) for f in fields}
    names = [f.name for f in fields]
    result: dict = {"fields": names}

    def redact(conn: Connection) -> None:
        seqs = _redact_audit(conn, entity, rid, set(names))
        _redact_outbox(conn, entity, rid)
        record_event(conn, category="privacy", action="erase", actor_id=actor.id, entity=entity.key, record_id=rid,
                     changes={"fields": names, "redacted_entries": seqs})
        result["redacted_entries"] = len(seqs)

    services.records.update(entity_key, rid, values, actor, expected_version=current["row_version"], within=redact)
    return result


def anonymous_value(f: FieldDef, record_id: int):
    """What replaces a personal value: nothing when allowed, else a placeholder that stays unique and valid."""
    if not f.required:
        return None
    if f.type == "phone":
        return f"+999{record_id:011d}"[:16]
    if f.type == "email":
        return f"erased-{record_id}@erased.invalid"
    return f"[erased-{record_id}]" if f.unique else ERASED


def _redact_audit(conn: Connection, entity: EntityDef, record_id: int, names: set[str]) -> list[int]:
    a = pt.audit
    seqs = []
    for r in conn.execute(select(a.c.id, a.c.seq, a.c.changes).where(a.c.entity == entity.key, a.c.record_id == record_id)).mappings().all():
        changes = r["changes"] or {}
        if not names & set(changes):
            continue
        redacted = {k: (_erase(v) if k in names else v) for k, v in changes.items()}
        conn.execute(a.update().where(a.c.id == r["id"]).values(changes=redacted, redacted=True))
        seqs.append(r["seq"])
    return seqs


def _redact_outbox(conn: Connection, entity: EntityDef, record_id: int) -> None:
    o = pt.outbox
    conn.execute(o.update().where(o.c.entity == entity.key, o.c.record_id == record_id)
                 .values(payload={"entity": entity.key, "id": record_id, "changes": {}, "redacted": True}))


def _erase(change):
    if isinstance(change, list):
        return [None if v is None else ERASED for v in change]
    return ERASED
