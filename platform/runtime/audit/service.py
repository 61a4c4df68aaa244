"""``record_event``: the one function that writes audit entries.

It runs inside the caller's transaction, so an entry commits or rolls back with the change it describes. The
entry is chained (given its ``seq`` and hashes) by ``seal``: at once on SQLite; on PostgreSQL by the process's
background sealer right after the commit (``sealer.py``), so that concurrent writers never wait for each other on the
chain head and a write does not pay for the seal.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Engine

from ..db import after_commit, inserted_id, is_sqlite, write_transaction
from ..storage import platform_tables as pt
from .chain import payload_hash
from .seal import seal_pending
from .sealer import wake_sealer

# What an entry is about. Record changes come from the record service; the others from their features.
_INSERT = pt.audit.insert()  # built once: it runs for every audited write
CATEGORIES = ("record", "auth", "permission", "publish", "export", "unmask", "privacy", "audit", "integration", "builder")


def record_event(conn: Connection, *, category: str, action: str, actor_id: int | None = None, entity: str | None = None,
                 record_id: int | None = None, subject: str | None = None, changes: dict | None = None,
                 request_id: str | None = None, ip: str | None = None, at: dt.datetime | None = None) -> int:
    """Append one entry to the audit log in ``conn``'s transaction; returns its id.

    ``changes`` is a JSON object: field changes for records, details for other events. Never put
    unmasked sensitive values in it for non-record events (the unmask event names the field, not the value).
    """
    check_event(category, action)
    changes = {} if changes is None else changes
    entry_id = inserted_id(conn.execute(_INSERT, entry_values(changes, at=at, actor_id=actor_id, category=category, action=action, entity=entity,
                                                              record_id=record_id, subject=subject, ip=ip, request_id=request_id)))
    if is_sqlite(conn):
        seal_pending(conn)
    else:  # outside a write_transaction the next seal chains it (at the latest the worker's minute tick)
        after_commit(conn, wake_sealer)
    return entry_id


def pending_entry(conn: Connection, *, category: str, action: str, actor_id: int | None = None, entity: str | None = None,
                  record_id: int | None = None, changes: dict | None = None, at: dt.datetime | None = None) -> dict:
    """The column values of an audit entry that the caller inserts in a statement of its own, on PostgreSQL.

    For a hot path that writes its change and the entry in one statement (the points ledger, ``append_pg.py``): the
    values are checked and built as ``record_event`` builds them, and the entry is sealed the same way after the commit.
    SQLite seals in the writer's transaction, so it takes ``record_event`` only."""
    if is_sqlite(conn):
        raise ValueError("on SQLite write audit entries with record_event (it seals them in the writer's transaction)")
    check_event(category, action)
    after_commit(conn, wake_sealer)
    return entry_values({} if changes is None else changes, at=at, actor_id=actor_id, category=category, action=action, entity=entity,
                        record_id=record_id, subject=None, ip=None, request_id=None)


def check_event(category: str, action: str) -> None:
    if category not in CATEGORIES:
        raise ValueError(f"unknown audit category {category!r}; use one of {', '.join(CATEGORIES)}")
    if not action or len(action) > 32:
        raise ValueError("an audit action is 1-32 characters")


def entry_values(changes: dict, *, at: dt.datetime | None, actor_id: int | None, category: str, action: str, entity: str | None,
                 record_id: int | None, subject: Any, ip: Any, request_id: Any) -> dict:
    """The columns of a pending (not yet chained) entry."""
    return {
        "at": at or dt.datetime.now(dt.timezone.utc), "actor_id": actor_id, "category": category, "action": action,
        "entity": entity, "record_id": record_id, "subject": (subject or None) and str(subject)[:200], "ip": (ip or None) and str(ip)[:64],
        "request_id": (request_id or None) and str(request_id)[:64], "changes": changes, "payload_hash": payload_hash(changes), "redacted": False,
    }


def record_event_now(engine: Engine, **event: Any) -> int:
    """``record_event`` in a transaction of its own, for events with no surrounding change (logins, exports)."""
    with write_transaction(engine) as conn:
        return record_event(conn, **event)
