"""Entity permissions in Flask-AppBuilder, named after stable resources (``entity:<app>.<entity>``)."""
from __future__ import annotations

from flask import Flask

from ..policy import ACTIONS, resource_name
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
    admin = sm.find_role(app.config["AUTH_ROLE_ADMIN"])
    for entity in catalog.entities.values():
        if entity.is_child:
            continue
        resource = resource_name(entity)
        for action in ACTIONS:
            if sm.find_permission_view_menu(action, resource) is not None:
                continue
            pv = sm.add_permission_view_menu(action, resource)
            if admin is not None and pv is not None:
                sm.add_permission_role(admin, pv)
            added += 1
    return added
