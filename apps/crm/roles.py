"""The CRM roles (data/roles.json), created or aligned by every install of an app (``AppHooks.roles``, before demo
data): sales rep, sales manager, service agent, service manager and a read-only executive, using the platform's row
scopes and field rules."""
from __future__ import annotations

import json


from crmkit.runtime.permissions.admin import PermissionAdmin

from .calendar import DATA


def role_spec(app_id: str) -> dict:
    return json.loads((DATA / "roles.json").read_text("utf-8")).get(app_id, {})


def setup_for(app_id: str):
    def setup(services, actor) -> int:
        """Create or align the app's roles (or add its entities to roles another CRM app created); returns grants set."""
        catalog = services.store.catalog()
        perms = PermissionAdmin(services.engine, services.policy.rules, services.store.catalog)
        made = 0
        for role_name, entities in role_spec(app_id).items():
            role_id = perms.ensure_role(role_name)
            for key, spec in entities.items():
                entity = catalog.entity(key)
                perms.set_actions(role_id, entity, spec["actions"], actor_id=actor.id, create_missing=True)
                perms.set_row_scope(role_id, entity, spec.get("scope", "all"), spec.get("filter"), actor_id=actor.id)
                if spec.get("fields"):
                    perms.set_field_rules(role_id, entity, {k: (v[0], bool(v[1])) for k, v in spec["fields"].items()}, actor_id=actor.id)
                made += 1
        return made
    return setup
