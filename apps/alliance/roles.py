"""The alliance roles: Alliance Manager (merchants, offers, workflow), Alliance Finance (settlement) and the shared
Merchant Staff role (workflow rights only; each merchant's own scoped role is made by ``staff.link_staff``).

Created by every install of the app (``AppHooks.roles``, like every template's roles); the administrators' app action
``roles.setup`` runs the same function to put the template's grants back after hand edits."""
from __future__ import annotations

from crmkit.runtime.actor import Actor
from crmkit.runtime.permissions.admin import PermissionAdmin

from .staff import FINANCE_ROLE, MANAGER_ROLE, SHARED_ROLE

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
    """Create the roles and set their entity actions to exactly ``GRANTS``; returns {"roles": {name: id}}."""
    perms = PermissionAdmin(services.engine, services.policy.rules, services.store.catalog)
    catalog = services.store.catalog()
    ids = {name: perms.ensure_role(name) for name in GRANTS}
    for name, grants in GRANTS.items():
        for key, actions in grants.items():
            perms.set_actions(ids[name], catalog.entity(key), actions, actor_id=actor.id, create_missing=True)
    return {"roles": ids}
