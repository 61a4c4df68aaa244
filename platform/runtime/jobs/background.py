"""Builds the background machinery for Services: the job registry and service, the queue, the event bus
and the outbox dispatcher, with the built-in job kinds registered."""
from __future__ import annotations

from dataclasses import dataclass

from huey import crontab
from sqlalchemy import Engine

from ..config import Settings
from ..events import EventBus, OutboxDispatcher
from .queue import HueyQueue, make_huey
from .registry import JobRegistry
from .service import JobService

OUTBOX_DISPATCH = "outbox.dispatch"
OUTBOX_SIGNAL = "outbox"
BUSY_RETRY_SECONDS = 2


@dataclass(frozen=True)
class Background:
    jobs: JobService
    events: EventBus
    outbox: OutboxDispatcher
    queue: HueyQueue

    def wake_outbox(self) -> None:
        """Called after a commit that wrote outbox events: ask a worker to dispatch now."""
        self.queue.signal(OUTBOX_SIGNAL)


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

    registry.register(OUTBOX_DISPATCH, dispatch_job, max_attempts=1)
    registry.periodic(OUTBOX_DISPATCH, crontab(minute="*"))
    queue.on_signal(OUTBOX_SIGNAL, dispatch_signal)
    return Background(jobs=jobs, events=events, outbox=outbox, queue=queue)
