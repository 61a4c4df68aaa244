"""Loading the permission rules and computing an actor's effective access to one entity.

The rules (field rules, row scopes and each role's entity permissions from Flask-AppBuilder)
are loaded once per process and kept until the *policy stamp* moves. The stamp is read with
one SQL statement per request; it combines the crmkit_policy_stamp row (bumped by every rule
change made here) with a fingerprint of FAB's role-permission table, so a grant changed on
FAB's own role screens is noticed too.

A user's effective access is the union over the roles that grant anything on the entity:
each field gets the best level any such role grants (hidden < masked < read-only < editable),
and a row is visible when any such role's scope covers it. A role without a rule for a field
may edit it; a role without a row scope sees all rows. A field whose best level is ``masked``
is read with its value masked (``masking.role_mask_style``) and is never writable or unmaskable.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from flask_appbuilder.security.sqla import models as fab_models
from sqlalchemy import Connection, Engine, Table, func, select

from ..actor import Actor
from ..meta.model import EntityDef, FieldDef
from .masking import mask_style, role_mask_style
from .tables import field_rule, policy_stamp, row_scope

ab_role: Table = fab_models.Role.__table__
ab_permission: Table = fab_models.Permission.__table__
ab_view_menu: Table = fab_models.ViewMenu.__table__
ab_permission_view: Table = fab_models.PermissionView.__table__
ab_permission_view_role: Table = fab_models.assoc_permissionview_role

ACCESS_RANK = {"hidden": 0, "masked": 1, "read_only": 2, "editable": 3}  # the tables' FIELD_ACCESS, in this order
REQUEST_KEY = "crmkit_policy_rules"


@dataclass(frozen=True)
class FieldRule:
    access: str
    may_unmask: bool = False


@dataclass(frozen=True)
class ScopeRule:
    role_id: int
    scope: str
    filter: Any = None


@dataclass(frozen=True)
class RuleSet:
    stamp: tuple
    role_names: Mapping[int, str] = field(default_factory=dict)
    role_perms: Mapping[int, frozenset] = field(default_factory=dict)  # role id → {(action, resource)}
    fields: Mapping[tuple[int, str], Mapping[str, FieldRule]] = field(default_factory=dict)  # (role, entity) → field → rule
    scopes: Mapping[tuple[int, str], ScopeRule] = field(default_factory=dict)  # (role, entity) → scope
    memo: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class EntityAccess:
    """What one actor may do with the fields and rows of one entity."""

    readable: tuple[str, ...]
    writable: tuple[str, ...]
    unmaskable: frozenset[str]
    # Field name → mask style of every readable field this actor sees masked: the entity's own masks (for every
    # reader, unmaskable ones included: revealing is a separate, audited action) and the role masks.
    masked: Mapping[str, str]
    scopes: tuple[ScopeRule, ...] | None  # None: every row
    roles: tuple[int, ...]  # the roles the access comes from


def stamp_query():
    """One statement: the rule stamp plus a fingerprint of FAB's role permissions."""
    pvr = ab_permission_view_role
    return select(
        select(policy_stamp.c.version).where(policy_stamp.c.id == 1).scalar_subquery().label("rules_version"),
        select(func.count()).select_from(pvr).scalar_subquery().label("grant_count"),
        select(func.coalesce(func.max(pvr.c.id), 0)).scalar_subquery().label("grant_max_id"),
        select(func.coalesce(func.sum(pvr.c.role_id * 7919 + pvr.c.permission_view_id), 0)).scalar_subquery().label("grant_sum"),
    )


def load_rules(conn: Connection, stamp: tuple) -> RuleSet:
    names: dict[int, str] = dict(conn.execute(select(ab_role.c.id, ab_role.c.name)).all())
    perms: dict[int, set] = {}
    q = (select(ab_permission_view_role.c.role_id, ab_permission.c.name, ab_view_menu.c.name)
         .join(ab_permission_view, ab_permission_view.c.id == ab_permission_view_role.c.permission_view_id)
         .join(ab_permission, ab_permission.c.id == ab_permission_view.c.permission_id)
         .join(ab_view_menu, ab_view_menu.c.id == ab_permission_view.c.view_menu_id)
         .where(ab_view_menu.c.name.like("entity:%")))
    for role_id, action, resource in conn.execute(q).tuples():
        perms.setdefault(role_id, set()).add((action, resource))
    fields: dict[tuple[int, str], dict[str, FieldRule]] = {}
    for r in conn.execute(select(field_rule)).mappings():
        fields.setdefault((r["role_id"], r["entity"]), {})[r["field"]] = FieldRule(r["access"], bool(r["may_unmask"]))
    scopes = {(r["role_id"], r["entity"]): ScopeRule(r["role_id"], r["scope"], r["filter"]) for r in conn.execute(select(row_scope)).mappings()}
    return RuleSet(stamp=stamp, role_names=names, role_perms={k: frozenset(v) for k, v in perms.items()}, fields=fields, scopes=scopes)


class RuleCache:
    """The rules of the current policy stamp; checked at most once per request when a request scope is given."""

    def __init__(self, engine: Engine | None, request_scope: Callable[[], Any] | None = None):
        self.engine = engine
        self.request_scope = request_scope
        self._lock = threading.Lock()
        self._cached: RuleSet | None = None

    def rules(self) -> RuleSet:
        if self.engine is None:
            return RuleSet(stamp=())
        scope = self.request_scope() if self.request_scope else None
        if scope is not None:
            found = getattr(scope, REQUEST_KEY, None)
            if found is not None:
                return found
        with self.engine.connect() as conn:
            stamp = tuple(conn.execute(stamp_query()).one())
            cached = self._cached
            if cached is None or cached.stamp != stamp:
                with self._lock:
                    cached = self._cached
                    if cached is None or cached.stamp != stamp:
                        cached = load_rules(conn, stamp)
                        self._cached = cached
        if scope is not None:
            setattr(scope, REQUEST_KEY, cached)
        return cached

    def prime(self, stamp: tuple) -> None:
        """Adopt a stamp read elsewhere in this request (with the actor's grants), so no separate stamp query runs.

        Loads the rules only when the stamp moved since this process last loaded them.
        """
        scope = self.request_scope() if self.request_scope else None
        if self.engine is None or scope is None or not stamp:
            return
        stamp = tuple(stamp)
        cached = self._cached
        if cached is None or cached.stamp != stamp:
            with self._lock:
                cached = self._cached
                if cached is None or cached.stamp != stamp:
                    with self.engine.connect() as conn:
                        cached = load_rules(conn, stamp)
                    self._cached = cached
        setattr(scope, REQUEST_KEY, cached)

    def forget_request(self) -> None:
        """Drop this request's copy (after a rule change in the same request)."""
        scope = self.request_scope() if self.request_scope else None
        if scope is not None and hasattr(scope, REQUEST_KEY):
            delattr(scope, REQUEST_KEY)


def bump_stamp(conn: Connection) -> None:
    """Every rule change calls this in its transaction, so every worker reloads on its next request."""
    conn.execute(policy_stamp.update().where(policy_stamp.c.id == 1).values(version=policy_stamp.c.version + 1))


def rule_key(entity: EntityDef) -> str:
    """Child tables follow their parent's entity permissions."""
    return entity.parent if entity.is_child and entity.parent else entity.key


def granting_roles(rules: RuleSet, actor: Actor, entity: EntityDef) -> tuple[int, ...]:
    resource = f"entity:{rule_key(entity)}"
    return tuple(sorted(r for r in actor.role_ids if any(res == resource for _, res in rules.role_perms.get(r, ()))))


def field_access(rules: RuleSet, role_id: int, entity: EntityDef, name: str) -> FieldRule:
    return rules.fields.get((role_id, entity.key), {}).get(name) or FieldRule("editable", False)


def granted_level(rule: FieldRule, f: FieldDef) -> str:
    """The level ``rule`` grants on ``f``. Fails closed: an unknown level grants nothing, and ``masked`` on a field
    whose values cannot be masked (a link, a child table: ``masking.NOT_ROLE_MASKABLE``) reads as ``hidden``."""
    if rule.access not in ACCESS_RANK or (rule.access == "masked" and role_mask_style(f) is None):
        return "hidden"
    return rule.access


def may_unmask(level: str, rule: FieldRule) -> bool:
    """A role lets its holders reveal a masked value only if it also reads the field unmasked itself."""
    return rule.may_unmask and ACCESS_RANK[level] >= ACCESS_RANK["read_only"]


def effective_access(rules: RuleSet, actor: Actor, entity: EntityDef, catalog_version: int | None = None) -> EntityAccess:
    # The key holds everything the answer depends on, masks, types and read-only flags included: two catalogs may
    # share an entity id and field names yet differ in those (e.g. a definition edited and republished).
    key = (actor.is_admin, actor.role_ids, entity.key, entity.id, catalog_version,
           tuple((f.name, f.type, f.opt("result"), mask_style(f), f.read_only) for f in entity.fields))
    found = rules.memo.get(key)
    if found is not None:
        return found
    own_masks = {f.name: style for f in entity.fields if (style := mask_style(f))}
    roles = () if actor.is_admin else granting_roles(rules, actor, entity)
    if actor.is_admin or not roles:
        # Admins have every field; an actor built from permissions alone (no role-based rules apply) the defaults.
        access = EntityAccess(readable=tuple(f.name for f in entity.fields),
                              writable=tuple(f.name for f in entity.fields if not f.read_only),
                              unmaskable=frozenset(own_masks) if actor.is_admin else frozenset(),
                              masked=MappingProxyType(own_masks), scopes=None, roles=())
    else:
        readable, writable, unmaskable, masked = [], [], set(), dict(own_masks)
        for f in entity.fields:
            granted = [(granted_level(fr, f), fr) for fr in (field_access(rules, r, entity, f.name) for r in roles)]
            best = max((level for level, _ in granted), key=ACCESS_RANK.__getitem__)
            style = role_mask_style(f)
            if best == "hidden":
                continue
            readable.append(f.name)
            if best == "masked" and style is not None:  # (always set here: granted_level reads it as hidden otherwise)
                masked[f.name] = style
                continue
            if best == "editable" and not f.read_only:
                writable.append(f.name)
            if f.name in own_masks and any(may_unmask(level, fr) for level, fr in granted):
                unmaskable.add(f.name)
        scopes: tuple[ScopeRule, ...] | None = ()
        if entity.is_child:
            scopes = None  # child rows are reached only through a visible parent
        else:
            found_scopes: list[ScopeRule] = []
            for r in roles:
                s = rules.scopes.get((r, entity.key))
                if s is None or s.scope == "all":
                    scopes = None  # one role sees every row
                    break
                found_scopes.append(s)
            else:
                scopes = tuple(found_scopes)
        access = EntityAccess(readable=tuple(readable), writable=tuple(writable), unmaskable=frozenset(unmaskable),
                              masked=MappingProxyType(masked), scopes=scopes, roles=roles)
    if len(rules.memo) > 4096:
        rules.memo.clear()
    rules.memo[key] = access
    return access
