"""Resolve the request's Actor from Flask-AppBuilder's user (session cookie or JWT)."""
from __future__ import annotations

from flask import current_app, g

from ..actor import Actor
from .i18n import current_locale

ADMIN_ROLE = "Admin"


def actor_for_user(user, locale: str = "zh") -> Actor | None:
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        return None
    roles = [r.name for r in getattr(user, "roles", [])]
    admin_role = current_app.config.get("AUTH_ROLE_ADMIN", ADMIN_ROLE)
    perms = set()
    if admin_role not in roles:
        sm = current_app.appbuilder.sm
        for role_perms in sm.get_user_roles_permissions(user).values():
            for action, resource in role_perms:
                if resource.startswith("entity:"):
                    perms.add((action, resource))
    return Actor(id=user.id, username=user.username, is_admin=admin_role in roles, permissions=frozenset(perms), locale=locale)


def current_actor() -> Actor | None:
    """The acting user for this request, computed once."""
    if "crmkit_actor" not in g:
        from flask_login import current_user

        g.crmkit_actor = actor_for_user(current_user, current_locale())
    return g.crmkit_actor
