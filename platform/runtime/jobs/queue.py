"""The queue under the jobs: Huey, SQLite-backed (a file under CRMKIT_VAR_DIR) or Redis-backed (CRMKIT_REDIS_URL).

Huey carries only job ids and named signals; the job row in the database is the truth, so losing a
queue message (a wiped SQLite file, a Redis restart) only delays a job until the reaper re-enqueues it.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Callable

from huey import Huey, RedisHuey, SqliteHuey

from ..config import Settings

log = logging.getLogger(__name__)

RUN_JOB = "crmkit.run_job"
SIGNAL = "crmkit.signal"


def make_huey(settings: Settings, *, immediate: bool = False) -> Huey:
    if settings.redis_url:
        return RedisHuey("crmkit", url=settings.redis_url, results=False, immediate=immediate)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey("crmkit", filename=str(settings.huey_file.resolve()), results=False, immediate=immediate)


class HueyQueue:
    """Job ids and signals onto Huey; the consumer side calls back into the JobService."""

    def __init__(self, huey: Huey):
        self.huey = huey
        self._runner: Callable[[int], object] | None = None
        self._signals: dict[str, Callable[[], object]] = {}
        self._run_task = huey.task(name=RUN_JOB)(self._run)
        self._signal_task = huey.task(name=SIGNAL)(self._signal)

    def bind(self, runner: Callable[[int], object]) -> None:
        self._runner = runner

    def on_signal(self, name: str, handler: Callable[[], object]) -> None:
        """A named, argument-less wake-up (e.g. "outbox": dispatch pending events now)."""
        self._signals[name] = handler

    def enqueue(self, job_id: int, delay: float | None = None) -> None:
        if delay:
            self._run_task.schedule(args=(job_id,), delay=delay)
        else:
            self._run_task(job_id)

    def signal(self, name: str, delay: float | None = None) -> None:
        if delay:
            self._signal_task.schedule(args=(name,), delay=delay)
        else:
            self._signal_task(name)

    def add_periodic(self, name: str, schedule: Callable[[dt.datetime], bool], fn: Callable[[], object]) -> None:
        self.huey.periodic_task(schedule, name=name)(fn)

    def pending(self) -> int:
        return self.huey.pending_count()

    def _run(self, job_id: int):
        if self._runner is None:
            raise RuntimeError("the job queue is not bound to a JobService")
        self._runner(job_id)

    def _signal(self, name: str):
        handler = self._signals.get(name)
        if handler is None:
            log.warning("no handler for queue signal %r", name)
            return
        handler()
