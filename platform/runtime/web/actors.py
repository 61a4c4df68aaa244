"""Resolve the request's Actor from Flask-AppBuilder's user (session cookie or JWT).

Roles are the user's direct FAB roles, the roles of their FAB groups and the roles their posts
(岗位) carry; entity permissions come from all of those roles; the org unit from their org
membership. All of it is read in one statement (``org.grants.resolve_grants``).
"""
from __future__ import annotations

from flask import current_app, g

from ..actor import Actor
from ..org.grants import resolve_grants
from .i18n import current_locale

ADMIN_ROLE = "Admin"


def actor_for_user(user, locale: str = "zh") -> Actor | None:
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        return None
    admin_role = current_app.config.get("AUTH_ROLE_ADMIN", ADMIN_ROLE)
    services = current_app.extensions["crmkit"]
    with services.engine.connect() as conn:
        grants = resolve_grants(conn, user.id, admin_role)
    if grants is None or not grants.active:
        return None
    services.policy.rules.prime(grants.policy_stamp)
    services.store.prime(grants.meta_version)
    return Actor(id=user.id, username=user.username, is_admin=admin_role in grants.role_names, permissions=grants.permissions,
                 org_unit_id=grants.org_unit_id, locale=locale, role_ids=grants.role_ids)


def current_actor() -> Actor | None:
    """The acting user for this request, computed once."""
    if "crmkit_actor" not in g:
        from flask_login import current_user

        g.crmkit_actor = actor_for_user(current_user, current_locale())
    return g.crmkit_actor
