""""Why can X see Y?": the roles behind one user's access to an entity, a record and a field."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from ..actor import Actor
from ..meta.model import EntityDef
from .rules import field_access, rule_key


@dataclass
class RoleLine:
    role_id: int
    name: str
    actions: list[str]
    field_access: str | None  # for the asked field: hidden / masked / read_only / editable
    may_unmask: bool
    scope: str
    scope_filter: object
    row_match: bool | None  # does this role's scope cover the asked record?


@dataclass
class Explanation:
    actor: Actor
    entity: EntityDef
    is_admin: bool
    roles: list[RoleLine] = field(default_factory=list)
    can_read: bool = False
    record_exists: bool | None = None
    record_visible: bool | None = None
    field_name: str | None = None
    field_readable: bool | None = None
    field_writable: bool | None = None
    field_masked: bool | None = None  # read with its value masked (the field's own mask, or only masked roles)
    field_unmaskable: bool | None = None


def explain(services, actor: Actor, entity: EntityDef, record_id: int | None = None, field_name: str | None = None) -> Explanation:
    policy = services.policy
    rules = policy.rules.rules()
    catalog = services.store.catalog()
    resource = f"entity:{rule_key(entity)}"
    out = Explanation(actor=actor, entity=entity, is_admin=actor.is_admin, can_read=policy.allows(actor, entity, "read"),
                      field_name=field_name)
    table = services.queries.table_cache.tables(catalog)[entity.key]
    with services.engine.connect() as conn:
        if record_id is not None:
            out.record_exists = conn.execute(select(table.c.id).where(table.c.id == record_id, table.c.deleted_at.is_(None))).first() is not None
        for role_id in sorted(actor.role_ids):
            actions = sorted(a for a, res in rules.role_perms.get(role_id, ()) if res == resource)
            scope = rules.scopes.get((role_id, entity.key))
            fr = field_access(rules, role_id, entity, field_name) if field_name else None
            match = None
            if record_id is not None and out.record_exists and actions:
                if scope is None or scope.scope == "all":
                    match = True
                else:
                    clause = policy.scope_clause(scope, actor, entity, table, catalog)
                    match = conn.execute(select(table.c.id).where(table.c.id == record_id, clause)).first() is not None
            out.roles.append(RoleLine(role_id=role_id, name=rules.role_names.get(role_id, f"#{role_id}"), actions=actions,
                                      field_access=(fr.access if fr else None) if actions else None,
                                      may_unmask=bool(fr and fr.may_unmask) and bool(actions), scope=scope.scope if scope else "all",
                                      scope_filter=scope.filter if scope else None, row_match=match))
        if record_id is not None and out.record_exists and out.can_read:
            row_filter = policy.row_filter(actor, entity, table, catalog)
            q = select(table.c.id).where(table.c.id == record_id, *([row_filter] if row_filter is not None else []))
            out.record_visible = conn.execute(q).first() is not None
        elif record_id is not None:
            out.record_visible = False
    if field_name:
        access = policy.access(actor, entity)
        out.field_readable = out.can_read and field_name in access.readable
        out.field_writable = policy.allows(actor, entity, "update") and field_name in access.writable
        out.field_masked = bool(out.field_readable) and field_name in access.masked
        out.field_unmaskable = field_name in access.unmaskable
    return out
