"""Erasure: anonymise a data subject's personal fields, and redact those values in the audit log.

What is erased: the subject record's personal fields; the personal fields of its child-table rows
(family members, addresses…); and the personal fields of records in other entities that link to
the subject (a contact log entry's notes, say). Fields are personal when their definition says
``"personal": true``.

Every change goes through the record service like any edit. The linking records are erased first,
each in its own transaction, then the subject with its child rows in one: if anything fails part
way, running the erasure again finishes it (erased values stay erased). In each transaction the
audit entries about the record have their personal values replaced by ``[erased]`` (child-row
changes inside the parent's entries included) and are flagged ``redacted``; the chain covers each
payload through its hash, so it still verifies, and the erasure entry names every redacted entry
so verification can tell a redaction from tampering. Pending outbox events lose their payloads too.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from ..actor import Actor
from ..audit import record_event, seal_pending
from ..errors import ValidationFailed
from ..i18n_text import text
from ..meta.model import EntityDef, FieldDef
from ..storage import platform_tables as pt
from .personal import personal_fields
from .subject_export import require_privacy_admin

ERASED = "[erased]"


def erase_subject(services, entity_key: str, record_id: Any, actor: Actor) -> dict:
    """Anonymise the subject's personal data; returns {"fields", "child_rows", "linked_records", "redacted_entries"}."""
    require_privacy_admin(actor)
    catalog = services.store.catalog()
    entity = catalog.entity(entity_key)
    fields = personal_fields(entity)
    children = {f.name: (catalog.entities[f.opt("entity")], personal_fields(catalog.entities[f.opt("entity")]))
                for f in entity.fields if f.type == "child_table"}
    children = {name: (child, pf) for name, (child, pf) in children.items() if pf}
    if not fields and not children:
        raise ValidationFailed({"_schema": [text("{entity} has no fields marked as personal data, so there is nothing to erase.",
                                                 "{entity}没有标记为个人数据的字段，无需擦除。", entity=entity.label)]})
    current = services.queries.get(entity_key, record_id, actor)
    rid = current["id"]
    result: dict = {"fields": [f.name for f in fields], "child_rows": 0, "linked_records": {}, "redacted_entries": 0}

    for other, link, rows in linking_records(services, catalog, entity_key, rid, actor):
        for row in rows:
            result["redacted_entries"] += _erase_one(services, other, row, personal_fields(other), {}, actor)
            result["linked_records"][f"{other.key}.{link}"] = result["linked_records"].get(f"{other.key}.{link}", 0) + 1

    child_rows = {name: [r for r in current.get(name) or []] for name in children}
    result["child_rows"] = sum(len(rows) for rows in child_rows.values())
    result["redacted_entries"] += _erase_one(services, entity, current, fields, {n: (children[n][1], rows) for n, rows in child_rows.items()}, actor)
    return result


def linking_records(services, catalog, entity_key: str, record_id: int, actor: Actor):
    """(entity, link field, rows) for every entity with personal fields whose link fields point at the subject."""
    from .subject_export import all_rows

    for other in catalog.entities.values():
        if other.is_child or not personal_fields(other):
            continue
        for f in other.fields:
            if f.type == "link" and f.opt("target") == entity_key:
                rows = all_rows(services, other.key, actor, {"field": f.name, "op": "eq", "value": record_id})
                if rows:
                    yield other, f.name, rows


def _erase_one(services, entity: EntityDef, row: dict, fields: list[FieldDef], children: dict, actor: Actor) -> int:
    """Erase one record (and its child rows) in one transaction; returns how many audit entries were redacted."""
    rid = row["id"]
    values: dict[str, Any] = {f.name: anonymous_value(f, rid) for f in fields}
    for name, (child_fields, rows) in children.items():
        values[name] = [{"id": r["id"], **{f.name: anonymous_value(f, r["id"]) for f in child_fields}} for r in rows]
    names = {f.name for f in fields}
    child_names = {name: {f.name for f in child_fields} for name, (child_fields, _) in children.items()}
    redacted: list[int] = []

    def redact(conn: Connection) -> None:
        seqs = _redact_audit(conn, entity, rid, names, child_names)
        _redact_outbox(conn, entity, rid)
        record_event(conn, category="privacy", action="erase", actor_id=actor.id, entity=entity.key, record_id=rid,
                     changes={"fields": sorted(names), "child_fields": {k: sorted(v) for k, v in child_names.items()},
                              "redacted_entries": seqs})
        redacted.extend(seqs)

    services.records.update(entity.key, rid, values, actor, expected_version=row["row_version"], within=redact)
    return len(redacted)


def anonymous_value(f: FieldDef, record_id: int):
    """What replaces a personal value: nothing when allowed, else a placeholder that stays unique and valid."""
    if not f.required:
        return None
    if f.type == "phone":
        return f"+999{record_id:011d}"[:16]
    if f.type == "email":
        return f"erased-{record_id}@erased.invalid"
    return f"[erased-{record_id}]" if f.unique else ERASED


def _redact_audit(conn: Connection, entity: EntityDef, record_id: int, names: set[str], child_names: dict[str, set[str]] | None = None) -> list[int]:
    a = pt.audit
    child_names = child_names or {}
    seal_pending(conn)  # the erasure entry names the redacted entries by their place in the chain
    seqs = []
    for r in conn.execute(select(a.c.id, a.c.seq, a.c.changes).where(a.c.entity == entity.key, a.c.record_id == record_id)).mappings().all():
        changes = r["changes"] or {}
        if not (names | set(child_names)) & set(changes):
            continue
        redacted = {}
        for k, v in changes.items():
            if k in names:
                redacted[k] = _erase(v)
            elif k in child_names:
                redacted[k] = _erase_child_changes(v, child_names[k])
            else:
                redacted[k] = v
        if redacted != changes:
            conn.execute(a.update().where(a.c.id == r["id"]).values(changes=redacted, redacted=True))
            seqs.append(r["seq"])
    return seqs


def _erase_child_changes(change: Any, names: set[str]) -> Any:
    """Child-row changes as the record service records them: {"added": [rows], "changed": {id: {field: [old, new]}}, "removed": [ids]}."""
    if not isinstance(change, dict):
        return change
    out = dict(change)
    if isinstance(change.get("added"), list):
        out["added"] = [{k: (ERASED if k in names and v is not None else v) for k, v in row.items()} if isinstance(row, dict) else row
                        for row in change["added"]]
    if isinstance(change.get("changed"), dict):
        out["changed"] = {rid: {k: (_erase(v) if k in names else v) for k, v in diff.items()} if isinstance(diff, dict) else diff
                          for rid, diff in change["changed"].items()}
    return out


def _redact_outbox(conn: Connection, entity: EntityDef, record_id: int) -> None:
    o = pt.outbox
    conn.execute(o.update().where(o.c.entity == entity.key, o.c.record_id == record_id)
                 .values(payload={"entity": entity.key, "id": record_id, "changes": {}, "redacted": True}))


def _erase(change):
    if isinstance(change, list):
        return [None if v is None else ERASED for v in change]
    return ERASED
