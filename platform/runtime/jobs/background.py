"""Builds the background machinery for Services: the job registry and service, the queue, the event bus
and the outbox dispatcher, with the built-in job kinds registered."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from huey import crontab
from sqlalchemy import Engine

from ..audit import seal_now
from ..config import Settings
from ..events import EventBus, OutboxDispatcher
from .queue import HueyQueue, make_huey
from .registry import JobRegistry
from .service import JobService

OUTBOX_DISPATCH = "outbox.dispatch"
PURGE_JOBS = "jobs.purge"
OUTBOX_SIGNAL = "outbox"
BUSY_RETRY_SECONDS = 2
WAKE_INTERVAL = 1.0  # at most one immediate wake-up per second per process; a burst gets one trailing wake-up


@dataclass
class _WakeThrottle:
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock: Callable[[], float] = time.monotonic
    last: float = float("-inf")
    trailing_until: float = 0.0


@dataclass(frozen=True)
class Background:
    jobs: JobService
    events: EventBus
    outbox: OutboxDispatcher
    queue: HueyQueue
    _wake: _WakeThrottle = field(default_factory=_WakeThrottle, repr=False, compare=False)

    def wake_outbox(self) -> None:
        """Called after a commit that wrote outbox events: ask a worker to dispatch now.

        A bulk load commits many times a second; it sends one wake-up at once and one a second later,
        which finds every event committed in between.
        """
        now = self._wake.clock()
        with self._wake.lock:
            if now - self._wake.last >= WAKE_INTERVAL:
                self._wake.last = now
                delay = None
            elif now >= self._wake.trailing_until:
                self._wake.trailing_until = self._wake.last + WAKE_INTERVAL
                delay = WAKE_INTERVAL
            else:
                return
        self.queue.signal(OUTBOX_SIGNAL, delay=delay)


def build_background(settings: Settings, engine: Engine) -> Background:
    registry = JobRegistry()
    queue = HueyQueue(make_huey(settings))
    jobs = JobService(engine, registry, queue, lease_seconds=settings.job_lease_seconds, max_attempts=settings.job_max_attempts)
    queue.bind(jobs.execute)
    events = EventBus()
    outbox = OutboxDispatcher(engine, events, lease_seconds=settings.job_lease_seconds)

    def dispatch_job(ctx, payload):
        n = outbox.dispatch()
        return {"delivered": n, "busy": n is None}

    def dispatch_signal():
        if outbox.dispatch() is None:  # another dispatcher is busy: look again shortly, so nothing waits for the minute tick
            queue.signal(OUTBOX_SIGNAL, delay=BUSY_RETRY_SECONDS)

    def purge_job(ctx, payload):
        return {"deleted": jobs.purge(days=int(payload.get("days", 30)))}

    registry.register(OUTBOX_DISPATCH, dispatch_job, max_attempts=1)
    registry.register(PURGE_JOBS, purge_job, max_attempts=1)
    registry.periodic(PURGE_JOBS, crontab(minute="17", hour="3"), {"days": 30})
    queue.on_signal(OUTBOX_SIGNAL, dispatch_signal)
    # Plumbing, not a job row a minute: every worker's scheduler wakes the dispatcher (its lease makes it one at a time).
    queue.add_periodic("crmkit.outbox.sweep", crontab(minute="*"), dispatch_signal)
    # Audit entries written outside write_transaction (no after-commit seal) are chained within the minute.
    queue.add_periodic("crmkit.audit.seal", crontab(minute="*"), lambda: seal_now(engine))
    return Background(jobs=jobs, events=events, outbox=outbox, queue=queue)
