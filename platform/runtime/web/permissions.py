"""Entity permissions in Flask-AppBuilder, named after stable resources (``entity:<app>.<entity>``)."""
from __future__ import annotations

from flask import Flask

from ..policy import ACTIONS, RESOURCE_PREFIX, resource_name
from ..services import Services


def sync_entity_permissions(app: Flask, services: Services) -> int:
    """Make sure every installed entity has its permissions, so admins can grant them per role."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        catalog = services.store.catalog()
    except SQLAlchemyError:
        return 0  # platform tables not created yet (`crmkit init` has not run)
    sm = app.appbuilder.sm  # type: ignore[attr-defined]  # Flask-AppBuilder sets app.appbuilder at run time
    added = 0
    admin = None
    existing = existing_permissions(services)  # one query: asking FAB pair by pair made every app start ~0.3 s slower
    for entity in catalog.entities.values():
        if entity.is_child:
            continue
        resource = resource_name(entity)
        for action in ACTIONS:
            if (action, resource) in existing:
                continue
            admin = admin or sm.find_role(app.config["AUTH_ROLE_ADMIN"])
            pv = sm.add_permission_view_menu(action, resource)
            if admin is not None and pv is not None:
                sm.add_permission_role(admin, pv)
            added += 1
    return added


def existing_permissions(services: Services) -> set[tuple[str, str]]:
    """Every (action, resource) pair FAB has a permission row for, among the entity resources."""
    from sqlalchemy import select

    from ..permissions.admin import ab_permission, ab_permission_view, ab_view_menu

    q = (select(ab_permission.c.name, ab_view_menu.c.name)
         .select_from(ab_permission_view.join(ab_permission, ab_permission.c.id == ab_permission_view.c.permission_id)
                      .join(ab_view_menu, ab_view_menu.c.id == ab_permission_view.c.view_menu_id))
         .where(ab_view_menu.c.name.startswith(RESOURCE_PREFIX, autoescape=True)))
    with services.engine.connect() as conn:
        return {(str(a), str(r)) for a, r in conn.execute(q)}
