"""Outbox dispatch: pending events in id order, one dispatcher at a time, marked delivered after their handlers ran.

One dispatcher holds the ``outbox`` lease (see jobs.lease) while it works, so events of one record leave in
the order they were written and two dispatchers never hand out the same event. A handler error leaves the
event pending (attempts + 1, ``last_error``) and holds back later events of the same record until it succeeds.
A dispatcher that dies mid-batch loses its lease when it expires; the events it had not marked are dispatched
again by the next one: delivery is at-least-once.
"""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import Engine, select

from ..db import read_transaction, write_transaction
from ..jobs import lease
from ..jobs.service import worker_name
from ..storage import platform_tables as pt
from .bus import Event, EventBus

log = logging.getLogger(__name__)

LEASE = "outbox"
BATCH = 200


class OutboxDispatcher:
    def __init__(self, engine: Engine, bus: EventBus, *, lease_seconds: int = 60):
        self.engine = engine
        self.bus = bus
        self.lease_seconds = lease_seconds

    def dispatch(self, *, holder: str | None = None, max_batches: int = 50) -> int | None:
        """Dispatch pending events; returns how many were delivered, or None when another dispatcher holds the lease."""
        holder = holder or worker_name()
        if not lease.acquire(self.engine, LEASE, holder, self.lease_seconds):
            return None
        delivered = 0
        try:
            for _ in range(max_batches):
                n, more = self._batch(holder)
                delivered += n
                if not more:
                    break
        finally:
            lease.release(self.engine, LEASE, holder)
        return delivered

    def pending(self) -> int:
        from sqlalchemy import func

        with read_transaction(self.engine) as conn:
            return conn.execute(select(func.count()).select_from(pt.outbox).where(pt.outbox.c.dispatched_at.is_(None))).scalar_one()

    def _batch(self, holder: str) -> tuple[int, bool]:
        o = pt.outbox
        with read_transaction(self.engine) as conn:
            rows = conn.execute(select(o).where(o.c.dispatched_at.is_(None)).order_by(o.c.id).limit(BATCH)).mappings().all()
        blocked: set[tuple[str, int]] = set()
        delivered = 0
        for r in rows:
            key = (r["entity"], r["record_id"])
            if key in blocked:
                continue
            if not lease.acquire(self.engine, LEASE, holder, self.lease_seconds):  # renew; lost → stop at once
                return delivered, False
            event = Event(id=r["id"], topic=r["topic"], entity=r["entity"], record_id=r["record_id"], payload=dict(r["payload"] or {}),
                          created_at=r["created_at"])
            try:
                for handler in self.bus.handlers_for(event):
                    handler(event)
            except Exception as exc:  # noqa: BLE001 - recorded on the event, retried on the next pass
                log.warning("outbox event %s (%s %s#%s) failed: %s", r["id"], r["topic"], r["entity"], r["record_id"], exc)
                blocked.add(key)
                with write_transaction(self.engine) as wconn:
                    wconn.execute(o.update().where(o.c.id == r["id"]).values(attempts=o.c.attempts + 1, last_error=f"{type(exc).__name__}: {exc}"[:2000]))
                continue
            with write_transaction(self.engine) as wconn:
                wconn.execute(o.update().where(o.c.id == r["id"], o.c.dispatched_at.is_(None))
                              .values(dispatched_at=dt.datetime.now(dt.timezone.utc), attempts=o.c.attempts + 1, last_error=None))
            delivered += 1
        return delivered, len(rows) == BATCH and not blocked
