"""Role grants for segments, member care and activities, added to the template's roles (``roles.ROLES``) at install,
as a second role setup after ``roles.install_roles`` (which creates the roles).

Marketing manages segments, care campaigns and activities (and their registrations) and reads the care log; the
front desk and store managers read activities and segments and create/update registrations (check-in);
membership managers and the auditor read them all. Like ``install_roles`` it sets exactly what is listed, so
installing again changes nothing."""
from __future__ import annotations

from crmkit.runtime.permissions.admin import PermissionAdmin

from .roles import R, RW, RWD

ENTITIES = ("segment", "care", "care_log", "activity", "activity_registration")
GRANTS: dict[str, dict[str, tuple]] = {
    "Marketing": {"segment": RWD, "care": RWD, "care_log": R, "activity": RWD, "activity_registration": RWD},
    "Front Desk": {"activity": R, "activity_registration": RW, "segment": R},
    "Store Manager": {"activity": R, "activity_registration": RW, "segment": R},
    "Membership Manager": {"segment": R, "care": R, "care_log": R, "activity": R, "activity_registration": R},
    "Auditor": {e: R for e in ENTITIES},
}


def install_activity_roles(services, actor) -> None:
    catalog = services.store.catalog()
    admin = PermissionAdmin(services.engine, services.policy.rules, services.store.catalog)
    for name, grants in GRANTS.items():
        role_id = admin.ensure_role(name)
        for ent in ENTITIES:
            entity = catalog.entity(f"membership.{ent}")
            actions = grants.get(ent, ())
            admin.set_actions(role_id, entity, actions, actor_id=actor.id, create_missing=True)
