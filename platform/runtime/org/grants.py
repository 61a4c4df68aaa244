"""What a user holds: org unit, roles (direct, through FAB groups, through posts) and entity permissions.

Resolved in ONE SQL statement per request, which also reads the policy stamp and the metadata
stamp, so that authorization costs one statement per request: the policy's rule cache and the
request's catalog are primed with those stamps and reload (extra statements) only after a change.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from sqlalchemy import BindParameter, Connection, and_, bindparam, select, true, union

from ..permissions.rules import stamp_query
from ..storage.platform_tables import meta_stamp

from .tables import (ab_group_role, ab_permission, ab_permission_view, ab_permission_view_role, ab_role, ab_user,
                     ab_user_group, ab_user_role, ab_view_menu, post_role, user_org, user_post)

ENTITY_RESOURCE_PREFIX = "entity:"


@dataclass(frozen=True)
class Grants:
    user_id: int
    active: bool
    org_unit_id: int | None
    role_ids: frozenset[int]
    role_names: frozenset[str]
    # (action, resource) for resources named ``entity:<key>``; empty for the admin role (it may do everything).
    permissions: frozenset[tuple[str, str]]
    policy_stamp: tuple = ()  # the rule stamp read in the same statement (see permissions.rules.stamp_query)
    meta_version: int | None = None  # the metadata stamp, read in the same statement (see meta.store)


def user_roles_select(user_id):
    """Role ids a user holds: directly, through FAB groups, and through posts (columns: user_id, role_id)."""
    direct = select(ab_user_role.c.user_id, ab_user_role.c.role_id).where(ab_user_role.c.user_id == user_id)
    grouped = (select(ab_user_group.c.user_id, ab_group_role.c.role_id)
               .join(ab_group_role, ab_group_role.c.group_id == ab_user_group.c.group_id)
               .where(ab_user_group.c.user_id == user_id))
    posted = (select(user_post.c.user_id, post_role.c.role_id)
              .join(post_role, post_role.c.post_id == user_post.c.post_id)
              .where(user_post.c.user_id == user_id))
    return union(direct, grouped, posted).subquery("user_roles")


def _entity_permissions():
    return (select(ab_permission_view_role.c.role_id, ab_permission.c.name.label("action"), ab_view_menu.c.name.label("resource"))
            .join(ab_permission_view, ab_permission_view.c.id == ab_permission_view_role.c.permission_view_id)
            .join(ab_permission, ab_permission.c.id == ab_permission_view.c.permission_id)
            .join(ab_view_menu, ab_view_menu.c.id == ab_permission_view.c.view_menu_id)
            .where(ab_view_menu.c.name.like(ENTITY_RESOURCE_PREFIX + "%"))
            .subquery("entity_perms"))


@functools.lru_cache(maxsize=4)
def _grants_statement(admin_role: str):
    """Built once per admin role name with the user id as a bound parameter: building this select (several
    subqueries) costs more than running it, and a stable statement also hits SQLAlchemy's compiled cache."""
    user_id: BindParameter[int] = bindparam("grants_user_id")
    roles = user_roles_select(user_id)
    perms = _entity_permissions()
    stamp = stamp_query().add_columns(
        select(meta_stamp.c.version).where(meta_stamp.c.id == 1).scalar_subquery().label("meta_version")).subquery("request_stamps")
    stmt = (
        select(ab_user.c.active, user_org.c.org_unit_id, ab_role.c.id, ab_role.c.name, perms.c.action, perms.c.resource,
               *stamp.c)
        .select_from(
            ab_user.outerjoin(user_org, user_org.c.user_id == ab_user.c.id)
            .outerjoin(roles, roles.c.user_id == ab_user.c.id)
            .outerjoin(ab_role, ab_role.c.id == roles.c.role_id)
            .outerjoin(perms, and_(perms.c.role_id == ab_role.c.id, ab_role.c.name != admin_role))
            .join(stamp, true())
        )
        .where(ab_user.c.id == user_id)
    )
    return stmt


def resolve_grants(conn: Connection, user_id: int, admin_role: str = "Admin") -> Grants | None:
    """The user's grants, or None when there is no such user. One statement."""
    rows = conn.execute(_grants_statement(admin_role), {"grants_user_id": user_id}).all()
    if not rows:
        return None
    role_ids: set[int] = set()
    role_names: set[str] = set()
    permissions: set[tuple[str, str]] = set()
    for row in rows:  # (active, org unit, role id, role name, action, resource, *policy stamp, meta version)
        role_id, role_name, action, resource = row[2], row[3], row[4], row[5]
        if role_id is not None:
            role_ids.add(role_id)
            role_names.add(role_name)
        if action is not None:
            permissions.add((action, resource))
    return Grants(user_id=user_id, active=bool(rows[0][0]), org_unit_id=rows[0][1], role_ids=frozenset(role_ids),
                  role_names=frozenset(role_names), permissions=frozenset(permissions), policy_stamp=tuple(rows[0][6:-1]), meta_version=rows[0][-1])
