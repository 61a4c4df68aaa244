"""Write validators: app code that checks (and may complete) a record inside the record service's transaction.

An app registers ``hooks.validator("app.entity")(fn)``; the record service calls every validator of the entity
after the field-level validation and before the row is written. Field errors returned by validators are
merged and raised as one ``ValidationFailed``, so nothing is stored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import Connection, Table


@dataclass
class RecordWrite:
    """What a validator sees. ``values`` holds the cleaned values being written and may be completed in place
    (computed fields); ``current`` is the stored record on update (None on create); ``children`` the raw child rows sent."""

    conn: Connection
    catalog: Any
    entity: Any
    values: dict
    current: dict | None
    children: dict
    actor: Any
    tables: dict[str, Table]

    @property
    def creating(self) -> bool:
        return self.current is None

    def get(self, name: str, default=None):
        """The value after this write: the new value if sent, else the stored one."""
        if name in self.values:
            return self.values[name]
        return (self.current or {}).get(name, default)

    def table(self, entity_key: str) -> Table:
        return self.tables[entity_key]


Validator = Callable[[RecordWrite], "dict[str, list] | None"]


class ValidatorRegistry:
    def __init__(self):
        self._by_entity: dict[str, list[Validator]] = {}

    def add(self, entity_key: str, fn: Validator) -> None:
        if not callable(fn):
            raise TypeError("a validator must be callable as fn(write)")
        self._by_entity.setdefault(entity_key, []).append(fn)

    def run(self, write: RecordWrite) -> dict[str, list]:
        errors: dict[str, list] = {}
        for fn in self._by_entity.get(write.entity.key, ()):
            for name, messages in (fn(write) or {}).items():
                errors.setdefault(name, []).extend(messages if isinstance(messages, list) else [messages])
        return errors
