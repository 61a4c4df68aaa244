"""JobService: submit jobs, claim and run them by id, retry with backoff, requeue after a crash.

The ``crmkit_job`` row is the truth; the queue (Huey) only carries job ids. A worker claims a row with one
conditional UPDATE (``status='queued' → 'running'``), so two workers handed the same id never both run it.
While a job runs, its worker refreshes ``heartbeat_at`` every third of the lease (CRMKIT_JOB_LEASE_SECONDS).
A running row whose heartbeat is older than the lease belonged to a worker that died; ``reap`` puts it back
in the queue, and the next attempt runs it again, so handlers must be idempotent.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from typing import Any, Sequence

from sqlalchemy import Engine, and_, func, or_, select
from sqlalchemy.exc import IntegrityError

from ..actor import Actor
from ..db import inserted_id, read_transaction, write_transaction
from ..errors import RecordNotFound, ValidationFailed
from ..i18n_text import text
from ..storage import platform_tables as pt
from .registry import JobRegistry

log = logging.getLogger(__name__)

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINISHED = (SUCCEEDED, FAILED, CANCELLED)
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_ERROR_CHARS = 8000


class JobCancelled(Exception):
    """Raised by a handler (or by ``ctx.check_cancel()``) to stop a job whose cancellation was requested."""


class RetryLater(Exception):
    """Raised by a handler to run the job again after ``delay`` seconds without spending an attempt."""

    def __init__(self, delay: float, message: str = ""):
        super().__init__(message or f"retry in {delay:g}s")
        self.delay = delay


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def retry_delay(attempt: int) -> float:
    """Exponential backoff after the given failed attempt: 5 s, 20 s, 80 s, … capped at an hour."""
    return float(min(3600, 5 * 4 ** max(0, attempt - 1)))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobService:
    def __init__(self, engine: Engine, registry: JobRegistry, queue, *, lease_seconds: int = 60, max_attempts: int = 5):
        self.engine = engine
        self.registry = registry
        self.queue = queue
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.services = None  # set by Services.build (handlers get it as ctx.services)

    def attach(self, services) -> None:
        self.services = services

    # -- submitting ---------------------------------------------------------------------------------
    def submit(self, kind: str, payload: dict | None, *, actor: Actor | None, dedupe_key: str | None = None,
               delay: float | None = None, max_attempts: int | None = None) -> int:
        """Queue a job and return its id. With ``dedupe_key``, a second submit returns the first job's id."""
        job_kind = self.registry.get(kind)
        payload = {} if payload is None else payload
        if not isinstance(payload, dict):
            raise ValidationFailed({"payload": [text("A job payload is a JSON object.", "任务参数必须是 JSON 对象。")]})
        raw = json.dumps(payload, ensure_ascii=False, default=_reject)
        if len(raw.encode()) > MAX_PAYLOAD_BYTES:
            raise ValidationFailed({"payload": [text("A job payload is at most 64 KB.", "任务参数最多 64 KB。")]})
        if dedupe_key is not None and not (0 < len(dedupe_key) <= 200):
            raise ValueError("a dedupe key is 1-200 characters")
        now = utcnow()
        values = dict(kind=kind, payload=payload, status=QUEUED, dedupe_key=dedupe_key, created_at=now,
                      max_attempts=max_attempts or job_kind.max_attempts or self.max_attempts,
                      run_after=now + dt.timedelta(seconds=delay) if delay else None, actor_id=actor.id if actor else None)
        with write_transaction(self.engine) as conn:
            if dedupe_key is not None:
                existing = conn.execute(select(pt.job.c.id).where(pt.job.c.dedupe_key == dedupe_key)).scalar()
                if existing is not None:
                    return existing
            try:
                with conn.begin_nested():
                    job_id = inserted_id(conn.execute(pt.job.insert().values(**values)))
            except IntegrityError:
                return conn.execute(select(pt.job.c.id).where(pt.job.c.dedupe_key == dedupe_key)).scalar_one()
        self._enqueue(job_id, delay)
        return job_id

    def submit_periodic(self, kind: str, payload: dict, at: dt.datetime | None = None) -> int:
        """One job per kind and minute however many workers' schedulers fire."""
        at = at or utcnow()
        return self.submit(kind, payload, actor=None, dedupe_key=f"periodic:{kind}:{at:%Y%m%d%H%M}")

    def _enqueue(self, job_id: int, delay: float | None = None) -> None:
        try:
            self.queue.enqueue(job_id, delay)
        except Exception:  # the row stays queued; the reaper re-enqueues it
            log.exception("could not enqueue job %s; the reaper will pick it up", job_id)

    # -- reading ------------------------------------------------------------------------------------
    def get(self, job_id: int) -> dict | None:
        with read_transaction(self.engine) as conn:
            row = conn.execute(select(pt.job).where(pt.job.c.id == job_id)).mappings().first()
        return dict(row) if row else None

    def require(self, job_id: int) -> dict:
        """A job that must exist (one being run): its row, or RecordNotFound."""
        job = self.get(job_id)
        if job is None:
            raise RecordNotFound(text("Job #{id} does not exist.", "任务 #{id} 不存在。", id=job_id))
        return job

    def get_for(self, job_id: Any, actor: Actor) -> dict:
        """A job the actor may see: admins see every job, users their own."""
        jid = int(job_id) if str(job_id).isdigit() else None
        job = self.get(jid) if jid is not None and jid < 2**63 else None
        if job is None or not (actor.is_admin or (job["actor_id"] is not None and job["actor_id"] == actor.id)):
            raise RecordNotFound(text("Job #{id} does not exist.", "任务 #{id} 不存在。", id=job_id))
        return job

    def list_for(self, actor: Actor, *, status: str | None = None, limit: int = 50, before: int | None = None) -> list[dict]:
        stmt = select(pt.job).order_by(pt.job.c.id.desc()).limit(limit)
        if not actor.is_admin:
            stmt = stmt.where(pt.job.c.actor_id == actor.id)
        if status in STATUSES:
            stmt = stmt.where(pt.job.c.status == status)
        if before is not None:
            stmt = stmt.where(pt.job.c.id < before)
        with read_transaction(self.engine) as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    # -- cancelling ---------------------------------------------------------------------------------
    def cancel(self, job_id: Any, actor: Actor) -> dict:
        """A queued job is cancelled at once; a running one is asked to stop (its handler checks)."""
        job = self.get_for(job_id, actor)
        if job["status"] in FINISHED:
            raise ValidationFailed({"status": [text("This job has already finished.", "该任务已经结束。")]})
        now = utcnow()
        with write_transaction(self.engine) as conn:
            conn.execute(pt.job.update().where(pt.job.c.id == job["id"], pt.job.c.status == QUEUED)
                         .values(status=CANCELLED, cancel_requested=True, finished_at=now, message="cancelled"))
            conn.execute(pt.job.update().where(pt.job.c.id == job["id"], pt.job.c.status == RUNNING).values(cancel_requested=True))
        return self.get_for(job_id, actor)

    # -- running ------------------------------------------------------------------------------------
    def claim(self, job_id: int, worker: str) -> bool:
        now = utcnow()
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                pt.job.update()
                .where(pt.job.c.id == job_id, pt.job.c.status == QUEUED, pt.job.c.cancel_requested.is_(False),
                       or_(pt.job.c.run_after.is_(None), pt.job.c.run_after <= now))
                .values(status=RUNNING, attempts=pt.job.c.attempts + 1, worker=worker, heartbeat_at=now,
                        started_at=func.coalesce(pt.job.c.started_at, now), error=None)
            )
        return result.rowcount == 1

    def execute(self, job_id: int, *, worker: str | None = None) -> str | None:
        """Claim and run one job. Returns its new status, or None when another worker has it or it is not due."""
        worker = worker or worker_name()
        if not self.claim(job_id, worker):
            return None
        job = self.require(job_id)
        ctx = _Context(self, job, worker)
        beat = _Heartbeat(self, job_id, worker, ctx)
        beat.start()
        try:
            kind = self.registry.get(job["kind"])
            result = kind.handler(ctx, dict(job["payload"] or {}))
            if ctx.cancel_requested():
                raise JobCancelled()
        except JobCancelled:
            return self._finish(job_id, worker, status=CANCELLED, message="cancelled")
        except RetryLater as exc:
            return self._retry(job, worker, exc.delay, str(exc), spend_attempt=False)
        except Exception as exc:  # noqa: BLE001 - any handler failure is recorded on the row and retried
            error = f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}"[:MAX_ERROR_CHARS]
            log.warning("job %s (%s) attempt %s failed: %s", job_id, job["kind"], job["attempts"], exc)
            if job["attempts"] >= job["max_attempts"] or isinstance(exc, LookupError) and job["kind"] not in self.registry:
                return self._finish(job_id, worker, status=FAILED, error=error, message=str(exc)[:500])
            return self._retry(job, worker, retry_delay(job["attempts"]), error)
        finally:
            beat.stop()
        return self._finish(job_id, worker, status=SUCCEEDED, result=_jsonable(result))

    def _finish(self, job_id: int, worker: str, *, status: str, result=None, error=None, message=None) -> str | None:
        values: dict[str, Any] = dict(status=status, finished_at=utcnow(), heartbeat_at=None)
        if result is not None:
            values["result"] = result
        if error is not None:
            values["error"] = error
        if message is not None:
            values["message"] = message
        if status == SUCCEEDED:
            values["progress_done"] = func.coalesce(pt.job.c.progress_total, pt.job.c.progress_done)
        with write_transaction(self.engine) as conn:
            n = conn.execute(pt.job.update().where(pt.job.c.id == job_id, pt.job.c.worker == worker, pt.job.c.status == RUNNING)
                             .values(**values)).rowcount
        return status if n == 1 else None  # None: the lease was lost and the job requeued meanwhile

    def _retry(self, job: dict, worker: str, delay: float, error: str, *, spend_attempt: bool = True) -> str | None:
        values: dict[str, Any] = dict(status=QUEUED, worker=None, heartbeat_at=None, run_after=utcnow() + dt.timedelta(seconds=delay),
                                      error=error[:MAX_ERROR_CHARS])
        if not spend_attempt:
            values["attempts"] = pt.job.c.attempts - 1
            values["error"] = None
            values["message"] = error[:500]
        with write_transaction(self.engine) as conn:
            n = conn.execute(pt.job.update().where(pt.job.c.id == job["id"], pt.job.c.worker == worker, pt.job.c.status == RUNNING)
                             .values(**values)).rowcount
        if n == 1:
            self._enqueue(job["id"], delay)
            return QUEUED
        return None

    def work_once(self, *, limit: int = 100, worker: str | None = None) -> int:
        """Run the due queued jobs in this process, oldest first (the CLI's ``--once`` and tests)."""
        now = utcnow()
        with read_transaction(self.engine) as conn:
            ids: Sequence[int] = conn.execute(select(pt.job.c.id).where(pt.job.c.status == QUEUED, or_(pt.job.c.run_after.is_(None), pt.job.c.run_after <= now))
                               .order_by(pt.job.c.id).limit(limit)).scalars().all()
        return sum(1 for jid in ids if self.execute(jid, worker=worker) is not None)

    def reap(self, *, now: dt.datetime | None = None) -> list[int]:
        """Requeue running jobs whose worker stopped heart-beating, and re-enqueue queued jobs the queue lost."""
        now = now or utcnow()
        stale = now - dt.timedelta(seconds=self.lease_seconds)
        with write_transaction(self.engine) as conn:
            dead: Sequence[int] = conn.execute(select(pt.job.c.id).where(pt.job.c.status == RUNNING, pt.job.c.heartbeat_at < stale)).scalars().all()
            if dead:
                conn.execute(pt.job.update().where(pt.job.c.id.in_(dead), pt.job.c.status == RUNNING, pt.job.c.heartbeat_at < stale)
                             .values(status=QUEUED, worker=None, heartbeat_at=None, run_after=None,
                                     message="requeued: the worker stopped (lease expired)"))
            lost: Sequence[int] = conn.execute(select(pt.job.c.id).where(
                pt.job.c.status == QUEUED, *([pt.job.c.id.notin_(dead)] if dead else []),
                or_(and_(pt.job.c.run_after.is_(None), pt.job.c.created_at < stale), pt.job.c.run_after < stale))).scalars().all()
        for jid in [*dead, *lost]:
            self._enqueue(jid)
        if dead:
            log.warning("requeued %d job(s) whose worker stopped: %s", len(dead), dead)
        return list(dead)

    def purge(self, *, days: int = 30, now: dt.datetime | None = None) -> int:
        """Delete finished jobs older than ``days`` (failed ones are kept three times as long)."""
        now = now or utcnow()
        ok_before, failed_before = now - dt.timedelta(days=days), now - dt.timedelta(days=3 * days)
        with write_transaction(self.engine) as conn:
            return conn.execute(pt.job.delete().where(or_(
                and_(pt.job.c.status.in_((SUCCEEDED, CANCELLED)), pt.job.c.finished_at < ok_before),
                and_(pt.job.c.status == FAILED, pt.job.c.finished_at < failed_before)))).rowcount

    def heartbeat(self, job_id: int, worker: str) -> bool:
        with write_transaction(self.engine) as conn:
            return conn.execute(pt.job.update().where(pt.job.c.id == job_id, pt.job.c.worker == worker, pt.job.c.status == RUNNING)
                                .values(heartbeat_at=utcnow())).rowcount == 1


class _Context:
    """The JobContext a handler receives."""

    def __init__(self, jobs: JobService, job: dict, worker: str):
        self._jobs = jobs
        self._worker = worker
        self.job_id = job["id"]
        self.attempt = job["attempts"]
        self.actor_id = job["actor_id"]
        self.services = jobs.services
        self.lost = False
        self._cancel_checked = 0.0
        self._cancel = False

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        values: dict[str, Any] = dict(progress_done=max(0, int(done)), heartbeat_at=utcnow())
        if total is not None:
            values["progress_total"] = max(0, int(total))
        if message is not None:
            values["message"] = str(message)[:500]
        with write_transaction(self._jobs.engine) as conn:
            n = conn.execute(pt.job.update().where(pt.job.c.id == self.job_id, pt.job.c.worker == self._worker, pt.job.c.status == RUNNING)
                             .values(**values)).rowcount
        if n == 0:
            self.lost = True

    def cancel_requested(self) -> bool:
        if self.lost or self._cancel:
            return True
        if time.monotonic() - self._cancel_checked >= 0.5:
            self._cancel_checked = time.monotonic()
            with read_transaction(self._jobs.engine) as conn:
                self._cancel = bool(conn.execute(select(pt.job.c.cancel_requested).where(pt.job.c.id == self.job_id)).scalar())
        return self._cancel

    def check_cancel(self) -> None:
        if self.cancel_requested():
            raise JobCancelled()


class _Heartbeat(threading.Thread):
    """Refreshes the lease of a running job every third of the lease."""

    def __init__(self, jobs: JobService, job_id: int, worker: str, ctx: _Context):
        super().__init__(name=f"crmkit-job-{job_id}-heartbeat", daemon=True)
        self._jobs, self._job_id, self._worker, self._ctx = jobs, job_id, worker, ctx
        self._stop_event = threading.Event()

    def run(self) -> None:
        interval = max(0.2, self._jobs.lease_seconds / 3)
        while not self._stop_event.wait(interval):
            try:
                if not self._jobs.heartbeat(self._job_id, self._worker):
                    self._ctx.lost = True
                    return
            except Exception:  # a failed beat is retried on the next tick
                log.exception("heartbeat for job %s failed", self._job_id)

    def stop(self) -> None:
        self._stop_event.set()


def _reject(value):
    raise ValidationFailed({"payload": [text("A job payload holds only JSON values (not {type}).", "任务参数只能包含 JSON 值（不能是 {type}）。",
                                             type=type(value).__name__)]})


def _jsonable(result):
    if result is None:
        return None
    return json.loads(json.dumps(result, default=str))
