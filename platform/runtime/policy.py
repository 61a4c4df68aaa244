"""The one policy point: every read and write asks it what an actor may do with an entity.

Entity actions come from Flask-AppBuilder permissions named after stable resources
(``entity:<app>.<entity>`` with the actions in ``ACTIONS``). Field access (hidden / masked /
read-only / editable, may unmask) and row scopes (own, org unit, org subtree, all, custom
filter) come from the platform's rule tables (``permissions``), unioned over the actor's
roles and cached per process by a version stamp: one SQL statement per request.
"""
from __future__ import annotations

import copy
from types import MappingProxyType
import dataclasses
import datetime as dt
from typing import Any, Callable, Mapping

from sqlalchemy import Engine, FromClause, false, or_, select
from sqlalchemy.sql import ColumnElement

from .actor import Actor
from .errors import BadQuery, PermissionDenied
from .meta.model import EntityDef
from .permissions.masking import mask_style, mask_value
from .permissions.rules import EntityAccess, RuleCache, RuleSet, ScopeRule, effective_access, rule_key

ACTIONS = ("read", "create", "update", "delete", "export", "import", "bulk_edit", "builder", "report")  # report: create personal reports
VARIABLES = ("$user_id", "$org_unit_id")
NO_RULES = RuleSet(stamp=("admin",))


# id(entity) → (entity, masks). Compiled entities are immutable, and the entity itself is kept beside its masks
# so a recycled id can never return another entity's answer.
_MASKS: dict[int, tuple[EntityDef, MappingProxyType]] = {}


RESOURCE_PREFIX = "entity:"


def resource_name(entity: EntityDef) -> str:
    return f"{RESOURCE_PREFIX}{entity.key}"


class Policy:
    def __init__(self, engine: Engine | None = None, *, catalog: Callable[[], Any] | None = None,
                 request_scope: Callable[[], Any] | None = None, timezone: str = "Asia/Shanghai"):
        self.rules = RuleCache(engine, request_scope)
        self._catalog = catalog
        self.timezone = timezone

    # --- entity actions ------------------------------------------------------------------
    def allows(self, actor: Actor, entity: EntityDef, action: str) -> bool:
        if actor.is_admin:
            return True
        return (action, f"entity:{rule_key(entity)}") in actor.permissions

    def check(self, actor: Actor, entity: EntityDef, action: str) -> None:
        if not self.allows(actor, entity, action):
            raise PermissionDenied(
                f"You do not have permission to {action} {entity.plural_label.en} ({entity.plural_label.zh}). "
                f"Ask an administrator for the '{action}' permission on {resource_name(entity)}."
            )

    def may_share_filters(self, actor: Actor, entity: EntityDef) -> bool:
        """Sharing a saved list filter with roles shapes other people's lists: builders of the entity and admins only."""
        return self.allows(actor, entity, "builder")

    # --- fields ----------------------------------------------------------------------------
    def access(self, actor: Actor, entity: EntityDef) -> EntityAccess:
        if actor.is_admin:  # admins have every field and row: no rules to read
            access = effective_access(NO_RULES, actor, entity)
        else:
            access = effective_access(self.rules.rules(), actor, entity)
        return without_retired(access, entity)

    def readable_fields(self, actor: Actor, entity: EntityDef) -> tuple[str, ...]:
        return self.access(actor, entity).readable

    def writable_fields(self, actor: Actor, entity: EntityDef) -> tuple[str, ...]:
        return self.access(actor, entity).writable

    def unmaskable_fields(self, actor: Actor, entity: EntityDef) -> frozenset[str]:
        return self.access(actor, entity).unmaskable

    def comparable_fields(self, actor: Actor, entity: EntityDef) -> tuple[str, ...]:
        """Readable fields the actor may filter and sort on: a field they see masked only with the right to unmask it."""
        access = self.access(actor, entity)
        return tuple(n for n in access.readable if n not in access.masked or n in access.unmaskable)

    def masks(self, actor: Actor, entity: EntityDef) -> Mapping[str, str]:
        """Field name → mask style of the fields ``actor`` sees masked: the entity's own masks (every reader, system
        reads included) and the fields the actor's roles grant only ``masked`` (not admins, so not system reads)."""
        return self.access(actor, entity).masked

    def mask(self, actor: Actor, entity: EntityDef, *rows: dict) -> None:
        """``rows`` as ``actor`` may see them: the fields they see masked are masked in place (values only; other names
        are left alone). The one place values are masked before they leave the server; pass a page's rows together,
        so the actor's masks are looked up once."""
        masks = self.masks(actor, entity)
        if not masks:
            return
        for row in rows:
            for name, style in masks.items():
                if name in row:
                    row[name] = mask_value(style, row[name])

    @staticmethod
    def entity_masks(entity: EntityDef) -> Mapping[str, str]:
        """Field name → the field's own mask style (its definition's ``mask``), whoever reads: the fields that can be
        unmasked at all. What one actor sees masked is ``masks(actor, entity)``. Computed once per compiled entity."""
        found = _MASKS.get(id(entity))
        if found is None or found[0] is not entity:
            found = (entity, MappingProxyType({f.name: style for f in entity.fields if (style := mask_style(f))}))
            if len(_MASKS) > 512:  # old catalogs' entities: drop them rather than grow without bound
                _MASKS.clear()
            _MASKS[id(entity)] = found
        return found[1]

    # --- rows ------------------------------------------------------------------------------
    def row_filter(self, actor: Actor, entity: EntityDef, table: FromClause, catalog: Any = None) -> ColumnElement | None:
        """A clause limiting which rows the actor sees, or None for all rows (built into the caller's one query)."""
        scopes = self.access(actor, entity).scopes
        if scopes is None:
            return None
        clauses = [self.scope_clause(s, actor, entity, table, catalog) for s in scopes]
        return or_(*clauses) if clauses else false()

    def scope_clause(self, scope: ScopeRule, actor: Actor, entity: EntityDef, table: FromClause, catalog: Any = None) -> ColumnElement:
        from .storage import platform_tables as pt

        if scope.scope == "all":
            return ~false()
        if scope.scope == "own":
            return false() if actor.id is None else table.c.owner_id == actor.id
        if scope.scope in ("org_unit", "org_subtree"):
            if actor.org_unit_id is None:
                return false()
            if scope.scope == "org_unit":
                return table.c.org_unit_id == actor.org_unit_id
            unit = pt.org_unit.alias("scope_unit")
            prefix = select(unit.c.path).where(unit.c.id == actor.org_unit_id).scalar_subquery()
            return table.c.org_unit_id.in_(select(pt.org_unit.c.id).where(pt.org_unit.c.path.startswith(prefix, autoescape=False)))
        if scope.scope == "custom":
            tree, complete = substitute_variables(scope.filter, actor)
            if not complete or not tree:
                return false()
            return self.compile_custom(entity, table, tree, catalog)
        return false()

    def compile_custom(self, entity: EntityDef, table: FromClause, tree: Any, catalog: Any = None) -> ColumnElement:
        from .fields import FilterContext
        from .query.filters import compile_filter

        if catalog is None:
            if self._catalog is None:
                raise RuntimeError("A custom row scope needs the catalog: pass it, or build the Policy with catalog=...")
            catalog = self._catalog()
        dialect = self.rules.engine.dialect.name if self.rules.engine is not None else "default"
        ctx = FilterContext(dialect, self.timezone, dt.datetime.now(dt.timezone.utc))
        stored = tuple(f.name for f in entity.fields if catalog.type_of(f).stored)
        try:
            return compile_filter(catalog, entity, table, tree, ctx, stored)
        except BadQuery:
            return false()  # a custom scope that no longer compiles (a field was removed) grants nothing


def without_retired(access: EntityAccess, entity: EntityDef) -> EntityAccess:
    """Fields retired in the builder keep their column and data but are absent everywhere, for everyone."""
    retired = {f.name for f in entity.fields if f.config.get("retired")}
    if not retired:
        return access
    return dataclasses.replace(access, readable=tuple(n for n in access.readable if n not in retired),
                               writable=tuple(n for n in access.writable if n not in retired),
                               unmaskable=frozenset(n for n in access.unmaskable if n not in retired),
                               masked=MappingProxyType({n: s for n, s in access.masked.items() if n not in retired}))


def substitute_variables(tree: Any, actor: Actor) -> tuple[Any, bool]:
    """The filter tree with ``$user_id`` / ``$org_unit_id`` replaced; False when a variable has no value."""
    values = {"$user_id": actor.id, "$org_unit_id": actor.org_unit_id}
    complete = [True]

    def walk(node):
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str) and node in values:
            if values[node] is None:
                complete[0] = False
            return values[node]
        return node

    return walk(copy.deepcopy(tree)), complete[0]
