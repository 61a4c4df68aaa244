"""The Actor of an import that runs outside a request (a job or the CLI): the user who started it."""
from __future__ import annotations

from sqlalchemy import Engine, select

from ..actor import Actor
from ..errors import PermissionDenied
from ..org.grants import resolve_grants
from ..storage import fab_tables


def actor_by_id(engine: Engine, user_id: int, *, admin_role: str = "Admin", locale: str = "zh") -> Actor:
    with engine.connect() as conn:
        grants = resolve_grants(conn, user_id, admin_role)
        username = conn.execute(select(fab_tables.ab_user.c.username).where(fab_tables.ab_user.c.id == user_id)).scalar()
    if grants is None or not grants.active:
        raise PermissionDenied(f"User #{user_id} does not exist or is disabled.")
    return Actor(id=user_id, username=username or "", is_admin=admin_role in grants.role_names, permissions=grants.permissions,
                 org_unit_id=grants.org_unit_id, locale=locale, role_ids=grants.role_ids)


def actor_by_username(engine: Engine, username: str, **kw) -> Actor:
    with engine.connect() as conn:
        uid = conn.execute(select(fab_tables.ab_user.c.id).where(fab_tables.ab_user.c.username == username)).scalar()
    if uid is None:
        raise PermissionDenied(f"There is no user named '{username}'.")
    return actor_by_id(engine, uid, **kw)
