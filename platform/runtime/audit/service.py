"""``record_event``: the one function that writes audit entries.

It runs inside the caller's transaction, so an entry commits or rolls back with the change it
describes. Writers are serialised by updating the chain-head row first (a row lock on PostgreSQL,
the write lock on SQLite), so ``seq`` and ``prev_hash`` always follow commit order.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Engine

from ..db import write_transaction
from ..storage import platform_tables as pt
from .chain import entry_hash, payload_hash
from .tables import GENESIS_HASH, audit_head

# What an entry is about. Record changes come from the record service; the others from their features.
CATEGORIES = ("record", "auth", "permission", "publish", "export", "unmask", "privacy", "audit", "integration", "builder")


def record_event(conn: Connection, *, category: str, action: str, actor_id: int | None = None, entity: str | None = None,
                 record_id: int | None = None, subject: str | None = None, changes: dict | None = None,
                 request_id: str | None = None, ip: str | None = None, at: dt.datetime | None = None) -> int:
    """Append one entry to the audit chain in ``conn``'s transaction; returns its sequence number.

    ``changes`` is a JSON object: field changes for records, details for other events. Never put
    unmasked sensitive values in it for non-record events (the unmask event names the field, not the value).
    """
    if category not in CATEGORIES:
        raise ValueError(f"unknown audit category {category!r}; use one of {', '.join(CATEGORIES)}")
    if not action or len(action) > 32:
        raise ValueError("an audit action is 1-32 characters")
    changes = {} if changes is None else changes
    seq, prev = _lock_head(conn)
    entry = {
        "seq": seq, "at": at or dt.datetime.now(dt.timezone.utc), "actor_id": actor_id, "category": category, "action": action,
        "entity": entity, "record_id": record_id, "subject": (subject or None) and str(subject)[:200], "ip": (ip or None) and str(ip)[:64],
        "request_id": (request_id or None) and str(request_id)[:64],
    }
    digest = payload_hash(changes)
    h = entry_hash(prev, entry, digest)
    conn.execute(pt.audit.insert().values(**entry, changes=changes, payload_hash=digest, prev_hash=prev, hash=h, redacted=False))
    conn.execute(audit_head.update().where(audit_head.c.id == 1).values(hash=h))
    return seq


def record_event_now(engine: Engine, **event: Any) -> int:
    """``record_event`` in a transaction of its own, for events with no surrounding change (logins, exports)."""
    with write_transaction(engine) as conn:
        return record_event(conn, **event)


def _lock_head(conn: Connection) -> tuple[int, str]:
    """Take the chain lock and the next sequence number; returns (seq, previous hash)."""
    claim = audit_head.update().where(audit_head.c.id == 1).values(seq=audit_head.c.seq + 1).returning(audit_head.c.seq, audit_head.c.hash)
    row = conn.execute(claim).first()
    if row is None:  # a database created without the 0004 migration's seed row
        conn.execute(audit_head.insert().values(id=1, seq=0, hash=GENESIS_HASH, anchor_seq=0, anchor_hash=GENESIS_HASH))
        row = conn.execute(claim).one()
    return int(row[0]), row[1]
