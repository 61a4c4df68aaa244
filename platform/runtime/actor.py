"""Who is acting: resolved once per request from the authenticated user."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Actor:
    id: int | None
    username: str
    is_admin: bool = False
    # (action, resource) pairs, e.g. ("read", "entity:membership.member").
    permissions: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    org_unit_id: int | None = None
    locale: str = "zh"
    # Flask-AppBuilder role ids the user holds (directly or through posts): the policy point's input.
    role_ids: frozenset[int] = field(default_factory=frozenset)


SYSTEM = Actor(id=None, username="system", is_admin=True)
