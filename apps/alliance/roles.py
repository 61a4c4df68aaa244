"""The alliance roles: Alliance Manager (merchants, offers, workflow), Alliance Finance (settlement) and the shared
Merchant Staff role (workflow rights only; each merchant's own scoped role is made by ``staff.link_staff``).

Entity permissions exist once the web app has started with the app installed (it syncs them), so ``ensure_roles``
grants what exists and reports what does not; run it (app action ``roles.setup``) after the first start."""
from __future__ import annotations

from crmkit.runtime.actor import Actor
from crmkit.runtime.db import write_transaction

from .staff import FINANCE_ROLE, MANAGER_ROLE, SHARED_ROLE, ensure_role

ALL = {"read", "create", "update", "delete", "export", "report"}
ENTITIES = ("merchant", "offer", "redemption", "purchase", "settlement", "review", "complaint", "contact_log", "rating_change", "activity_merchant")
GRANTS = {
    MANAGER_ROLE: {**{f"alliance.{e}": ALL for e in ENTITIES}, "alliance.redemption": {"read", "export", "report"},
                   "alliance.purchase": {"read", "export", "report"}, "alliance.rating_change": {"read", "report"}, "membership.level": {"read"},
                   "membership.activity": {"read"}},
    FINANCE_ROLE: {"alliance.merchant": {"read"}, "alliance.offer": {"read"}, "alliance.redemption": {"read", "export", "report"},
                   "alliance.purchase": {"read", "export", "report"}, "alliance.settlement": {"read", "export", "report"}},
    SHARED_ROLE: {},
}


def ensure_roles(services, actor: Actor) -> dict:
    """Create the roles and grant their entity actions; returns {"roles": {name: id}, "missing": [...]}."""
    from crmkit.runtime.errors import ValidationFailed
    from crmkit.runtime.permissions.admin import PermissionAdmin

    with write_transaction(services.engine) as conn:
        ids = {name: ensure_role(conn, name) for name in GRANTS}
    perms = PermissionAdmin(services.engine, services.policy.rules, services.store.catalog)
    catalog = services.store.catalog()
    missing = []
    for name, grants in GRANTS.items():
        for key, actions in grants.items():
            try:
                perms.set_actions(ids[name], catalog.entity(key), actions, actor_id=actor.id)
            except ValidationFailed:
                missing.append(f"{name}: {key}")
    return {"roles": ids, "missing": missing}
