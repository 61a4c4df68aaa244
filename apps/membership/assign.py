"""Set fields of a record that app code owns (counts, status, links to ledger entries) through the record service.

The record service needs the ``row_version`` that was read; a concurrent change makes it refuse (StaleRecord), and
these writes are derived values, so they read again and retry a few times instead of failing."""
from __future__ import annotations

from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.errors import StaleRecord


def set_fields(services, entity_key: str, record_id: int, actor: Actor, *, data: dict | None = None, assigned: dict | None = None,
               attempts: int = 5) -> int:
    for attempt in range(attempts):
        version = services.queries.get(entity_key, record_id, SYSTEM)["row_version"]
        try:
            return services.records.update(entity_key, record_id, dict(data or {}), actor, expected_version=version, assigned=assigned)
        except StaleRecord:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
