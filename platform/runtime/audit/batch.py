"""``record_events``: many audit entries in one statement, chained exactly as ``record_event`` would chain them.

The chain head is claimed once for the whole batch (``seq`` advanced by the number of entries), the hashes are
computed in order in Python, and the rows go in with one COPY (PostgreSQL) or executemany. Verification cannot tell the difference.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection

from ..storage import platform_tables as pt
from ..storage.bulk_insert import insert_rows
from .chain import entry_hash, payload_hash
from .service import CATEGORIES
from .tables import GENESIS_HASH, audit_head


def record_events(conn: Connection, events: list[dict]) -> list[int]:
    """Append ``events`` (the keyword arguments of ``record_event``) in ``conn``'s transaction; returns their seqs."""
    if not events:
        return []
    for e in events:
        if e["category"] not in CATEGORIES:
            raise ValueError(f"unknown audit category {e['category']!r}")
        if not e["action"] or len(e["action"]) > 32:
            raise ValueError("an audit action is 1-32 characters")
    n = len(events)
    claim = audit_head.update().where(audit_head.c.id == 1).values(seq=audit_head.c.seq + n).returning(audit_head.c.seq, audit_head.c.hash)
    row = conn.execute(claim).first()
    if row is None:
        conn.execute(audit_head.insert().values(id=1, seq=0, hash=GENESIS_HASH, anchor_seq=0, anchor_hash=GENESIS_HASH))
        row = conn.execute(claim).one()
    last_seq, prev = int(row[0]), row[1]
    seq = last_seq - n
    rows, seqs = [], []
    now = dt.datetime.now(dt.timezone.utc)
    for e in events:
        seq += 1
        changes = e.get("changes") or {}
        entry = {
            "seq": seq, "at": e.get("at") or now, "actor_id": e.get("actor_id"), "category": e["category"], "action": e["action"],
            "entity": e.get("entity"), "record_id": e.get("record_id"), "subject": (e.get("subject") or None) and str(e["subject"])[:200],
            "ip": (e.get("ip") or None) and str(e["ip"])[:64], "request_id": (e.get("request_id") or None) and str(e["request_id"])[:64],
        }
        digest = payload_hash(changes)
        h = entry_hash(prev, entry, digest)
        rows.append({**entry, "changes": changes, "payload_hash": digest, "prev_hash": prev, "hash": h, "redacted": False})
        seqs.append(seq)
        prev = h
    insert_rows(conn, pt.audit, rows)
    conn.execute(audit_head.update().where(audit_head.c.id == 1).values(hash=prev))
    return seqs
