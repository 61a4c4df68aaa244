"""The typed registry of job kinds: a kind name maps to one handler, optionally run on a schedule."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Protocol

KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


class JobContext(Protocol):
    """What a handler gets: progress reporting, cooperative cancellation and the runtime services."""

    job_id: int
    attempt: int
    services: Any

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None: ...

    def cancel_requested(self) -> bool: ...


JobHandler = Callable[[JobContext, dict], "dict | None"]


@dataclass(frozen=True)
class JobKind:
    kind: str
    handler: JobHandler
    max_attempts: int | None = None  # None: the service default (CRMKIT_JOB_MAX_ATTEMPTS)


@dataclass(frozen=True)
class PeriodicJob:
    kind: str
    schedule: Callable  # a ``huey.crontab(...)`` validator: datetime → bool
    payload: dict


class JobRegistry:
    """Job kinds by name. Handlers must be idempotent: a job may run again after a crash or a retry."""

    def __init__(self):
        self._kinds: dict[str, JobKind] = {}
        self._periodic: dict[str, PeriodicJob] = {}

    def register(self, kind: str, handler: JobHandler, *, max_attempts: int | None = None) -> None:
        if not KIND_PATTERN.match(kind) or len(kind) > 100:
            raise ValueError(f"job kind {kind!r} must be dotted lowercase words, e.g. 'messaging.send'")
        if kind in self._kinds:
            raise ValueError(f"job kind {kind!r} is already registered")
        if not callable(handler):
            raise TypeError("a job handler must be callable as handler(ctx, payload)")
        self._kinds[kind] = JobKind(kind, handler, max_attempts)

    def periodic(self, kind: str, schedule: Callable, payload: dict | None = None) -> None:
        """Run the registered ``kind`` on a schedule, e.g. ``registry.periodic("outbox.dispatch", crontab(minute="*"))``.

        Every worker's scheduler fires; the job is submitted with a dedupe key per minute, so it runs once.
        """
        if kind not in self._kinds:
            raise ValueError(f"register job kind {kind!r} before scheduling it")
        self._periodic[kind] = PeriodicJob(kind, schedule, dict(payload or {}))

    def get(self, kind: str) -> JobKind:
        try:
            return self._kinds[kind]
        except KeyError:
            raise LookupError(f"no job kind {kind!r} is registered") from None

    def __contains__(self, kind: str) -> bool:
        return kind in self._kinds

    def kinds(self) -> list[str]:
        return sorted(self._kinds)

    def periodic_jobs(self) -> list[PeriodicJob]:
        return list(self._periodic.values())
