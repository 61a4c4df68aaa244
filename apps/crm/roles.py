"""The CRM roles (data/roles.json), created when an app is first installed: sales rep, sales manager,
service agent, service manager and a read-only executive, using the platform's row scopes and field rules."""
from __future__ import annotations

import json

from sqlalchemy import select

from crmkit.runtime.org.tables import ab_role
from crmkit.runtime.permissions.admin import PermissionAdmin

from .calendar import DATA


def role_spec(app_id: str) -> dict:
    return json.loads((DATA / "roles.json").read_text("utf-8")).get(app_id, {})


def seeder_for(app_id: str):
    def seed(app, services) -> int:
        """Create the app's roles (or add its entities to roles another CRM app created); returns grants made."""
        catalog = services.store.catalog()
        perms = PermissionAdmin(services.engine, services.policy.rules, services.store.catalog)
        sm = app.appbuilder.sm
        made = 0
        for role_name, entities in role_spec(app_id).items():
            with services.engine.connect() as conn:
                role_id = conn.execute(select(ab_role.c.id).where(ab_role.c.name == role_name)).scalar()
            if role_id is None:
                # End the FAB session's read transaction first: on SQLite (WAL) a transaction whose snapshot predates
                # the grants just written through the engine cannot write ("database is locked").
                app.extensions["sqlalchemy"].session.commit()
                role_id = sm.add_role(role_name).id
                app.extensions["sqlalchemy"].session.commit()
            for key, spec in entities.items():
                entity = catalog.entity(key)
                perms.set_actions(role_id, entity, spec["actions"], actor_id=None)
                perms.set_row_scope(role_id, entity, spec.get("scope", "all"), spec.get("filter"), actor_id=None)
                if spec.get("fields"):
                    perms.set_field_rules(role_id, entity, {k: (v[0], bool(v[1])) for k, v in spec["fields"].items()}, actor_id=None)
                made += 1
        return made
    return seed
