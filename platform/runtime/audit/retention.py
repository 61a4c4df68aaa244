"""Retention: purge entries older than the retention period while keeping the chain verifiable.

Only a prefix of the chain is removed. The last removed entry's hash becomes the anchor that
verification starts from, and the purge itself is recorded (with that anchor) as a chained entry.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, select

from ..db import write_transaction
from ..storage import platform_tables as pt
from .seal import lock_head
from .service import record_event
from .tables import audit_head

MIN_RETENTION_DAYS = 180


@dataclass(frozen=True)
class PurgeResult:
    deleted: int
    anchor_seq: int
    cutoff: dt.datetime


def purge_before(engine: Engine, cutoff: dt.datetime, *, actor_id: int | None = None) -> PurgeResult:
    """Delete the oldest entries, up to the last one written before ``cutoff``."""
    a = pt.audit
    with write_transaction(engine) as conn:
        # take the chain lock first, so no entry is appended while the anchor moves
        lock_head(conn)
        anchor_seq: int = conn.execute(select(audit_head.c.anchor_seq).where(audit_head.c.id == 1)).scalar_one()
        # the first entry at or after the cutoff bounds the prefix (entries are appended in time order)
        first_kept = conn.execute(select(func.min(a.c.seq)).where(a.c.seq > anchor_seq, a.c.at >= cutoff)).scalar()
        last_seq = conn.execute(select(func.max(a.c.seq)).where(a.c.seq > anchor_seq, *([a.c.seq < first_kept] if first_kept else []))).scalar()
        if last_seq is None:
            return PurgeResult(0, anchor_seq, cutoff)
        anchor_hash: str = conn.execute(select(a.c.hash).where(a.c.seq == last_seq)).scalar_one()
        deleted = conn.execute(delete(a).where(a.c.seq <= last_seq)).rowcount
        conn.execute(audit_head.update().where(audit_head.c.id == 1).values(anchor_seq=last_seq, anchor_hash=anchor_hash))
        record_event(conn, category="audit", action="purge", actor_id=actor_id,
                     changes={"deleted": deleted, "anchor_seq": last_seq, "anchor_hash": anchor_hash, "cutoff": cutoff.isoformat()})
        return PurgeResult(deleted, last_seq, cutoff)


def retention_cutoff(days: int, now: dt.datetime | None = None) -> dt.datetime:
    return (now or dt.datetime.now(dt.timezone.utc)) - dt.timedelta(days=days)
