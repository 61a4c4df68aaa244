"""The actor a webhook acts as: its owner role (or user), so payloads pass through the Policy like any read."""
from __future__ import annotations

from sqlalchemy import Connection, select

from ..actor import Actor
from ..org.grants import ENTITY_RESOURCE_PREFIX, resolve_grants
from ..org.tables import ab_permission, ab_permission_view, ab_permission_view_role, ab_role, ab_view_menu

ADMIN_ROLE = "Admin"


def owner_actor(conn: Connection, hook: dict) -> Actor | None:
    """None when the owner no longer exists (or is inactive): such a webhook sends nothing."""
    if hook["owner_user_id"] is not None:
        grants = resolve_grants(conn, hook["owner_user_id"], ADMIN_ROLE)
        if grants is None or not grants.active:
            return None
        return Actor(id=grants.user_id, username=f"webhook:{hook['id']}", is_admin=ADMIN_ROLE in grants.role_names,
                     permissions=grants.permissions, org_unit_id=grants.org_unit_id, role_ids=grants.role_ids)
    role = conn.execute(select(ab_role.c.id, ab_role.c.name).where(ab_role.c.id == hook["owner_role_id"])).first()
    if role is None:
        return None
    perms = conn.execute(
        select(ab_permission.c.name, ab_view_menu.c.name)
        .join(ab_permission_view, ab_permission_view.c.permission_id == ab_permission.c.id)
        .join(ab_view_menu, ab_view_menu.c.id == ab_permission_view.c.view_menu_id)
        .join(ab_permission_view_role, ab_permission_view_role.c.permission_view_id == ab_permission_view.c.id)
        .where(ab_permission_view_role.c.role_id == role.id, ab_view_menu.c.name.like(ENTITY_RESOURCE_PREFIX + "%"))
    ).all()
    return Actor(id=None, username=f"webhook:{hook['id']}", is_admin=role.name == ADMIN_ROLE,
                 permissions=frozenset((p[0], p[1]) for p in perms), role_ids=frozenset({role.id}))
