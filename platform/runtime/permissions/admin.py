"""Changing permissions: entity actions per role (FAB's tables), field rules and row scopes.

Every change runs in one transaction that also bumps the policy stamp and writes a
``permission`` audit event, so each worker picks it up on its next request and the
change is on the record.
"""
from __future__ import annotations

from typing import Any, Iterable

from flask_appbuilder.security.sqla import models as fab_models
from sqlalchemy import Connection, Engine, Table, delete, insert, select

from ..audit import record_event
from ..db import write_transaction
from ..errors import BadQuery, ValidationFailed
from ..i18n_text import Text, text
from ..meta.catalog import Catalog
from ..meta.model import EntityDef
from .masking import role_mask_style
from .rules import RuleCache, bump_stamp
from .tables import FIELD_ACCESS, SCOPES, field_rule, row_scope

ab_role: Table = fab_models.Role.__table__
ab_permission: Table = fab_models.Permission.__table__
ab_view_menu: Table = fab_models.ViewMenu.__table__
ab_permission_view: Table = fab_models.PermissionView.__table__
ab_permission_view_role: Table = fab_models.assoc_permissionview_role


def ensure_role(conn: Connection, name: str) -> int:
    """The id of the role called ``name``, created if there is none (app templates' roles, a merchant's own role)."""
    found = conn.execute(select(ab_role.c.id).where(ab_role.c.name == name)).scalar()
    if found is None:
        found = conn.execute(insert(ab_role).values(name=name)).inserted_primary_key[0]  # type: ignore[index]  # one-column key
    return int(found)


def ensure_permission_rows(conn: Connection, resource: str, actions: Iterable[str]) -> None:
    """FAB's permission rows for ``resource`` × ``actions``. The web app creates them when it starts; an app install
    (its role setup) may run before that, from the CLI or a test, so it creates what it grants."""
    for action in actions:
        vm = conn.execute(select(ab_view_menu.c.id).where(ab_view_menu.c.name == resource)).scalar()
        if vm is None:
            vm = conn.execute(insert(ab_view_menu).values(name=resource)).inserted_primary_key[0]  # type: ignore[index]
        perm = conn.execute(select(ab_permission.c.id).where(ab_permission.c.name == action)).scalar()
        if perm is None:
            perm = conn.execute(insert(ab_permission).values(name=action)).inserted_primary_key[0]  # type: ignore[index]
        if conn.execute(select(ab_permission_view.c.id).where(ab_permission_view.c.permission_id == perm,
                                                             ab_permission_view.c.view_menu_id == vm)).first() is None:
            conn.execute(insert(ab_permission_view).values(permission_id=perm, view_menu_id=vm))


def field_rule_errors(entity: EntityDef, rules: dict[str, tuple[str, bool]]) -> dict[str, list]:
    """Field name → problems with its (access, may_unmask) rule; empty when every rule may be stored."""
    errors: dict[str, list] = {}
    for name, (access, _) in rules.items():
        f = entity.field_map.get(name)
        if f is None:
            errors[name] = [text("{entity} has no field '{name}'.", "{entity}没有字段“{name}”。", entity=Text(entity.key, entity.label.zh), name=name)]
        elif access not in FIELD_ACCESS:
            errors[name] = [text("'{access}' is not a field access level; choose one of: {levels}.", "“{access}”不是字段权限级别，请选择：{levels}。",
                                 access=str(access)[:40], levels=", ".join(FIELD_ACCESS))]
        elif access == "masked" and role_mask_style(f) is None:
            errors[name] = [text("{field} cannot be shown masked: it refers to other records, people or files. Choose hidden or read-only.",
                                 "{field}无法脱敏显示：它引用其他记录、人员或文件。请选择隐藏或只读。", field=f.label)]
    return errors


class PermissionAdmin:
    def __init__(self, engine: Engine, rules: RuleCache, catalog):
        self.engine = engine
        self.rules = rules
        self._catalog = catalog

    # --- reading ---------------------------------------------------------------------------
    def roles(self) -> list[tuple[int, str]]:
        with self.engine.connect() as conn:
            return [(r.id, r.name) for r in conn.execute(select(ab_role.c.id, ab_role.c.name).order_by(ab_role.c.name))]

    def role_name(self, role_id: int) -> str:
        with self.engine.connect() as conn:
            name = conn.execute(select(ab_role.c.name).where(ab_role.c.id == role_id)).scalar()
        if name is None:
            raise BadQuery(f"There is no role with id {role_id}; pick one from the permission matrix.")
        return name

    def ensure_role(self, name: str) -> int:
        with write_transaction(self.engine) as conn:
            return ensure_role(conn, name)

    # --- entity actions ----------------------------------------------------------------------
    def set_actions(self, role_id: int, entity: EntityDef, actions: Iterable[str], *, actor_id: int | None,
                    create_missing: bool = False) -> dict:
        """Make ``actions`` exactly the role's actions on the entity; returns {"added": [...], "removed": [...]}.
        ``create_missing`` creates FAB's permission rows first (an app's role setup at install, see
        ``ensure_permission_rows``); otherwise a missing one is an error for the admin pages to show."""
        from ..policy import ACTIONS, resource_name

        wanted = set(actions)
        unknown = wanted - set(ACTIONS)
        if unknown:
            raise ValidationFailed({"actions": [f"Unknown action(s): {', '.join(sorted(unknown))}; use {', '.join(ACTIONS)}."]})
        self.role_name(role_id)
        resource = resource_name(entity)
        with write_transaction(self.engine) as conn:
            if create_missing:
                ensure_permission_rows(conn, resource, wanted)
            pvs: dict[Any, int] = dict(conn.execute(
                select(ab_permission.c.name, ab_permission_view.c.id)
                .join(ab_permission, ab_permission.c.id == ab_permission_view.c.permission_id)
                .join(ab_view_menu, ab_view_menu.c.id == ab_permission_view.c.view_menu_id)
                .where(ab_view_menu.c.name == resource)).all())
            missing = wanted - set(pvs)
            if missing:
                raise ValidationFailed({"actions": [f"{resource} has no '{a}' permission yet; restart the app to create it." for a in sorted(missing)]})
            held = {a for a, pv in pvs.items() if conn.execute(select(ab_permission_view_role.c.id).where(
                ab_permission_view_role.c.role_id == role_id, ab_permission_view_role.c.permission_view_id == pv)).first()}
            added, removed = sorted(wanted - held), sorted((held - wanted) & set(ACTIONS))
            for a in added:
                conn.execute(ab_permission_view_role.insert().values(role_id=role_id, permission_view_id=pvs[a]))
            for a in removed:
                conn.execute(delete(ab_permission_view_role).where(ab_permission_view_role.c.role_id == role_id,
                                                                   ab_permission_view_role.c.permission_view_id == pvs[a]))
            if added or removed:
                self._changed(conn, actor_id, "actions", entity, role_id, {"added": added, "removed": removed})
        return {"added": added, "removed": removed}

    # --- field rules ---------------------------------------------------------------------------
    def set_field_rules(self, role_id: int, entity: EntityDef, rules: dict[str, tuple[str, bool]], *, actor_id: int | None) -> int:
        """Set (access, may_unmask) per field name; a field set to ("editable", False) needs no rule and is stored as none.
        Every rule is checked before anything is written: one bad rule refuses them all."""
        errors = field_rule_errors(entity, rules)
        if errors:
            raise ValidationFailed(errors)
        self.role_name(role_id)
        changed = {}
        with write_transaction(self.engine) as conn:
            current = {r.field: (r.access, bool(r.may_unmask)) for r in conn.execute(
                select(field_rule).where(field_rule.c.role_id == role_id, field_rule.c.entity == entity.key))}
            for name, (access, unmask) in rules.items():
                before = current.get(name, ("editable", False))
                after = (access, bool(unmask))
                if before == after:
                    continue
                conn.execute(delete(field_rule).where(field_rule.c.role_id == role_id, field_rule.c.entity == entity.key, field_rule.c.field == name))
                if after != ("editable", False):
                    conn.execute(field_rule.insert().values(role_id=role_id, entity=entity.key, field=name, access=access, may_unmask=bool(unmask)))
                changed[name] = [list(before), list(after)]
            if changed:
                self._changed(conn, actor_id, "fields", entity, role_id, changed)
        return len(changed)

    # --- row scopes ------------------------------------------------------------------------------
    def set_row_scope(self, role_id: int, entity: EntityDef, scope: str, filter: Any = None, *, actor_id: int | None) -> None:
        if scope not in SCOPES:
            raise ValidationFailed({"scope": [f"Choose one of: {', '.join(SCOPES)}."]})
        if scope == "custom":
            self.check_custom_filter(entity, filter)
        else:
            filter = None
        self.role_name(role_id)
        with write_transaction(self.engine) as conn:
            before = conn.execute(select(row_scope.c.scope, row_scope.c.filter).where(row_scope.c.role_id == role_id, row_scope.c.entity == entity.key)).first()
            old = (before.scope, before.filter) if before else ("all", None)
            if old == (scope, filter):
                return
            conn.execute(delete(row_scope).where(row_scope.c.role_id == role_id, row_scope.c.entity == entity.key))
            if scope != "all":
                conn.execute(row_scope.insert().values(role_id=role_id, entity=entity.key, scope=scope, filter=filter))
            self._changed(conn, actor_id, "row_scope", entity, role_id, {"scope": [old[0], scope], "filter": [old[1], filter]})

    def check_custom_filter(self, entity: EntityDef, tree: Any) -> None:
        """A custom scope must compile (with sample values for the variables) or it is refused with the reason."""
        import datetime as dt

        from ..actor import Actor
        from ..fields import FilterContext
        from ..query.filters import compile_filter
        from ..policy import substitute_variables
        from ..storage.entity_tables import build_tables

        if not isinstance(tree, dict) or not tree:
            raise ValidationFailed({"filter": ["A custom scope needs a filter, e.g. {\"field\": \"owner_id\", \"op\": \"eq\", \"value\": \"$user_id\"}."]})
        catalog: Catalog = self._catalog()
        table = build_tables(catalog)[1][entity.key]
        sample, _ = substitute_variables(tree, Actor(id=1, username="sample", org_unit_id=1))
        stored = tuple(f.name for f in entity.fields if catalog.type_of(f).stored)
        try:
            compile_filter(catalog, entity, table, sample, FilterContext(self.engine.dialect.name, "UTC", dt.datetime.now(dt.timezone.utc)), stored)
        except BadQuery as exc:
            raise ValidationFailed({"filter": [str(exc.message)]}) from None

    # --- shared ---------------------------------------------------------------------------------
    def _changed(self, conn, actor_id, what: str, entity: EntityDef, role_id: int, details: dict) -> None:
        bump_stamp(conn)
        record_event(conn, category="permission", action=f"set_{what}"[:32], actor_id=actor_id, entity=entity.key,
                     subject=f"role:{role_id}", changes={"role_id": role_id, **details})
        self.rules.forget_request()
