"""The one policy point: every read and write asks it what an actor may do with an entity.

Entity actions come from Flask-AppBuilder permissions named after stable resources
(``entity:<app>.<entity>`` with read/create/update/delete/export/import). Field and
row rules grow from here in the security issue; callers already ask for them.
"""
from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.sql import ColumnElement

from .actor import Actor
from .errors import PermissionDenied
from .meta.model import EntityDef

ACTIONS = ("read", "create", "update", "delete", "export", "import")


def resource_name(entity: EntityDef) -> str:
    return f"entity:{entity.key}"


class Policy:
    def allows(self, actor: Actor, entity: EntityDef, action: str) -> bool:
        if actor.is_admin:
            return True
        key = entity.parent if entity.is_child and entity.parent else entity.key
        return (action, f"entity:{key}") in actor.permissions

    def check(self, actor: Actor, entity: EntityDef, action: str) -> None:
        if not self.allows(actor, entity, action):
            raise PermissionDenied(
                f"You do not have permission to {action} {entity.plural_label.en} ({entity.plural_label.zh}). "
                f"Ask an administrator for the '{action}' permission on {resource_name(entity)}."
            )

    def readable_fields(self, actor: Actor, entity: EntityDef) -> tuple[str, ...]:
        return tuple(f.name for f in entity.fields)

    def writable_fields(self, actor: Actor, entity: EntityDef) -> tuple[str, ...]:
        return tuple(f.name for f in entity.fields if not f.read_only)

    def row_filter(self, actor: Actor, entity: EntityDef, table: Table) -> ColumnElement | None:
        """A clause limiting which rows the actor sees, or None for all rows."""
        return None
