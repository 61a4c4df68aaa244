"""Jobs: submit and dedupe, claim by id exactly once, progress, retries with backoff, cancel, crash recovery (lease)."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select, update

from crmkit.runtime.actor import Actor
from crmkit.runtime.db import write_transaction
from crmkit.runtime.errors import RecordNotFound, ValidationFailed
from crmkit.runtime.jobs import JobCancelled, JobRegistry, RetryLater
from crmkit.runtime.jobs.service import retry_delay
from crmkit.runtime.storage import platform_tables as pt
from jobs_support import make_due

ALICE = Actor(id=1001, username="alice")
BOB = Actor(id=1002, username="bob")
ADMIN = Actor(id=1, username="admin", is_admin=True)


@pytest.fixture
def jobs(base_services):
    return base_services.jobs


def test_a_job_runs_once_with_progress_and_result(jobs, base_services):
    seen = []

    def handler(ctx, payload):
        assert ctx.services is base_services
        for i in range(payload["n"]):
            ctx.progress(i + 1, payload["n"], f"step {i + 1}")
            seen.append(i)
        return {"total": payload["n"]}

    jobs.registry.register("test.count", handler)
    job_id = jobs.submit("test.count", {"n": 3}, actor=ALICE)
    row = jobs.get(job_id)
    assert row["status"] == "queued" and row["actor_id"] == ALICE.id and row["attempts"] == 0
    assert jobs.execute(job_id) == "succeeded"
    assert jobs.execute(job_id) is None  # already done: the claim fails, nothing runs twice
    row = jobs.get(job_id)
    assert seen == [0, 1, 2]
    assert (row["status"], row["progress_done"], row["progress_total"], row["message"], row["result"], row["attempts"]) == \
        ("succeeded", 3, 3, "step 3", {"total": 3}, 1)
    assert row["started_at"] is not None and row["finished_at"] >= row["started_at"]


def test_dedupe_key_returns_the_existing_job(jobs):
    jobs.registry.register("test.noop", lambda ctx, p: None)
    a = jobs.submit("test.noop", {}, actor=ALICE, dedupe_key="welcome:42")
    b = jobs.submit("test.noop", {"other": 1}, actor=BOB, dedupe_key="welcome:42")
    c = jobs.submit("test.noop", {}, actor=ALICE, dedupe_key="welcome:43")
    assert a == b != c
    with write_transaction(jobs.engine) as conn:
        assert conn.execute(select(pt.job.c.id).where(pt.job.c.kind == "test.noop")).scalars().all() == sorted([a, c])


def test_bad_submissions_are_refused_and_store_nothing(jobs):
    jobs.registry.register("test.noop", lambda ctx, p: None)
    with pytest.raises(LookupError):
        jobs.submit("test.unknown", {}, actor=ALICE)
    with pytest.raises(ValidationFailed):
        jobs.submit("test.noop", ["not", "a", "dict"], actor=ALICE)
    with pytest.raises(ValidationFailed):
        jobs.submit("test.noop", {"when": dt.datetime.now()}, actor=ALICE)
    with pytest.raises(ValidationFailed):
        jobs.submit("test.noop", {"big": "x" * 70000}, actor=ALICE)
    assert jobs.list_for(ADMIN) == []


def test_registry_is_typed():
    reg = JobRegistry()
    reg.register("a.b", lambda ctx, p: None)
    with pytest.raises(ValueError):
        reg.register("a.b", lambda ctx, p: None)
    with pytest.raises(ValueError):
        reg.register("Bad Kind", lambda ctx, p: None)
    with pytest.raises(TypeError):
        reg.register("a.c", "not callable")
    with pytest.raises(ValueError):
        reg.periodic("a.unknown", lambda now: True)


def test_failures_retry_with_backoff_then_fail_with_the_error(jobs):
    calls = []

    def flaky(ctx, payload):
        calls.append(ctx.attempt)
        raise RuntimeError(f"boom {ctx.attempt}")

    jobs.registry.register("test.flaky", flaky, max_attempts=3)
    job_id = jobs.submit("test.flaky", {}, actor=ALICE)
    before = dt.datetime.now(dt.timezone.utc)
    assert jobs.execute(job_id) == "queued"
    row = jobs.get(job_id)
    assert row["attempts"] == 1 and "RuntimeError: boom 1" in row["error"]
    assert row["run_after"] >= before + dt.timedelta(seconds=retry_delay(1) - 1)
    assert jobs.execute(job_id) is None  # not due yet
    make_due(jobs.services, job_id)
    assert jobs.execute(job_id) == "queued"
    make_due(jobs.services, job_id)
    assert jobs.execute(job_id) == "failed"
    row = jobs.get(job_id)
    assert calls == [1, 2, 3] and row["status"] == "failed" and row["attempts"] == 3
    assert row["error"].startswith("RuntimeError: boom 3") and "Traceback" in row["error"]
    assert [retry_delay(n) for n in (1, 2, 3, 9)] == [5, 20, 80, 3600]


def test_a_flaky_job_succeeds_on_retry(jobs):
    def once_broken(ctx, payload):
        if ctx.attempt == 1:
            raise ConnectionError("temporarily down")
        return {"ok": True}

    jobs.registry.register("test.once_broken", once_broken)
    job_id = jobs.submit("test.once_broken", {}, actor=ALICE)
    assert jobs.execute(job_id) == "queued"
    make_due(jobs.services, job_id)
    assert jobs.execute(job_id) == "succeeded"
    row = jobs.get(job_id)
    assert row["attempts"] == 2 and row["error"] is None and row["result"] == {"ok": True}


def test_retry_later_does_not_spend_an_attempt(jobs):
    jobs.registry.register("test.later", lambda ctx, p: (_ for _ in ()).throw(RetryLater(30, "rate limited")), max_attempts=1)
    job_id = jobs.submit("test.later", {}, actor=ALICE)
    assert jobs.execute(job_id) == "queued"
    row = jobs.get(job_id)
    assert row["attempts"] == 0 and row["message"] == "rate limited" and row["status"] == "queued"


def test_cancel_queued_and_running_jobs(jobs):
    started, release = threading.Event(), threading.Event()

    def long(ctx, payload):
        started.set()
        release.wait(5)
        for i in range(100):
            ctx.check_cancel()
            ctx.progress(i, 100)
        return {"finished": True}

    jobs.registry.register("test.long", long)
    queued = jobs.submit("test.long", {}, actor=ALICE)
    assert jobs.cancel(queued, ALICE)["status"] == "cancelled"
    assert jobs.execute(queued) is None
    with pytest.raises(ValidationFailed):
        jobs.cancel(queued, ALICE)
    with pytest.raises(RecordNotFound):
        jobs.cancel(queued, BOB)  # someone else's job is not even visible

    running = jobs.submit("test.long", {}, actor=ALICE)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("status", jobs.execute(running)))
    t.start()
    assert started.wait(5)
    assert jobs.cancel(running, ADMIN)["cancel_requested"] is True
    release.set()
    t.join(10)
    assert out["status"] == "cancelled" and jobs.get(running)["status"] == "cancelled"


def test_handler_raising_job_cancelled_is_cancelled_not_failed(jobs):
    def stop(ctx, payload):
        raise JobCancelled()

    jobs.registry.register("test.stop", stop)
    job_id = jobs.submit("test.stop", {}, actor=ALICE)
    assert jobs.execute(job_id) == "cancelled"


def test_users_see_their_own_jobs_admins_see_all(jobs):
    jobs.registry.register("test.noop", lambda ctx, p: None)
    a = jobs.submit("test.noop", {}, actor=ALICE)
    b = jobs.submit("test.noop", {}, actor=BOB)
    assert [j["id"] for j in jobs.list_for(ALICE)] == [a]
    assert [j["id"] for j in jobs.list_for(ADMIN)] == [b, a]
    assert jobs.get_for(a, ALICE)["id"] == a
    with pytest.raises(RecordNotFound):
        jobs.get_for(a, BOB)
    with pytest.raises(RecordNotFound):
        jobs.get_for("abc", ADMIN)


def test_a_running_job_with_a_stale_heartbeat_is_requeued_and_runs_again(jobs):
    runs = []
    jobs.registry.register("test.record", lambda ctx, p: runs.append(ctx.attempt))
    job_id = jobs.submit("test.record", {}, actor=ALICE)
    assert jobs.claim(job_id, "dead-worker")  # a worker took it, then died without a word
    assert jobs.reap() == []  # heartbeat still fresh
    with write_transaction(jobs.engine) as conn:
        conn.execute(update(pt.job).where(pt.job.c.id == job_id)
                     .values(heartbeat_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=jobs.lease_seconds + 5)))
    assert jobs.reap() == [job_id]
    row = jobs.get(job_id)
    assert row["status"] == "queued" and row["worker"] is None and "lease expired" in row["message"]
    assert jobs.execute(job_id) == "succeeded"
    assert runs == [2] and jobs.get(job_id)["attempts"] == 2
    # the dead worker, should it wake up, cannot finish the job again
    assert jobs._finish(job_id, "dead-worker", status="failed") is None and jobs.get(job_id)["status"] == "succeeded"


def test_periodic_submissions_dedupe_per_minute(jobs):
    jobs.registry.register("test.tick", lambda ctx, p: None)
    at = dt.datetime(2026, 1, 1, 8, 30, 10, tzinfo=dt.timezone.utc)
    a = jobs.submit_periodic("test.tick", {}, at)
    b = jobs.submit_periodic("test.tick", {}, at.replace(second=50))
    c = jobs.submit_periodic("test.tick", {}, at.replace(minute=31))
    assert a == b != c


@pytest.mark.postgres_only
def test_two_workers_racing_for_the_same_job_run_it_once(jobs):
    runs = []
    lock = threading.Lock()

    def handler(ctx, payload):
        with lock:
            runs.append(ctx.job_id)

    jobs.registry.register("test.race", handler)
    ids = [jobs.submit("test.race", {}, actor=ALICE) for _ in range(20)]
    barrier = threading.Barrier(4)

    def worker(n):
        barrier.wait()
        for jid in ids:
            jobs.execute(jid, worker=f"w{n}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(runs) == sorted(ids)
    assert {jobs.get(j)["status"] for j in ids} == {"succeeded"} and {jobs.get(j)["attempts"] for j in ids} == {1}


def test_worker_schedules_registered_periodic_kinds_and_purges_old_jobs(jobs, base_services):
    from huey import crontab

    from crmkit.runtime.jobs.worker import build_consumer

    jobs.registry.register("test.nightly", lambda ctx, p: {"ran": p})
    jobs.registry.periodic("test.nightly", crontab(minute="0", hour="2"), {"scope": "all"})
    build_consumer(base_services, workers=1)
    periodic = {t.name: t for t in jobs.queue.huey._registry.periodic_tasks}
    assert {"crmkit.periodic.test.nightly", "crmkit.periodic.jobs.purge", "crmkit.outbox.sweep", "crmkit.audit.seal"} <= set(periodic)
    task = periodic["crmkit.periodic.test.nightly"]
    assert task.validate_datetime(dt.datetime(2026, 1, 1, 2, 0)) and not task.validate_datetime(dt.datetime(2026, 1, 1, 3, 0))
    jobs.queue.huey.execute(task)  # the scheduler firing (twice, as two workers would): one job
    jobs.queue.huey.execute(task)
    nightly = [j for j in jobs.list_for(ADMIN) if j["kind"] == "test.nightly"]
    assert len(nightly) == 1 and nightly[0]["payload"] == {"scope": "all"}

    old = jobs.submit("test.nightly", {}, actor=None)
    jobs.execute(old)
    with write_transaction(jobs.engine) as conn:
        conn.execute(update(pt.job).where(pt.job.c.id == old).values(finished_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=31)))
    assert jobs.purge(days=30) == 1 and jobs.get(old) is None and jobs.get(nightly[0]["id"]) is not None


def test_the_workers_minute_tick_seals_audit_entries_written_outside_write_transaction(jobs, base_services):
    from crmkit.runtime.audit import record_event
    from crmkit.runtime.audit.verify import verify_chain
    from crmkit.runtime.jobs.worker import build_consumer

    build_consumer(base_services, workers=1)
    periodic = {t.name: t for t in jobs.queue.huey._registry.periodic_tasks}
    with base_services.engine.begin() as conn:  # a plain transaction: no after-commit seal
        entry = record_event(conn, category="export", action="export", changes={"rows": 1})
    a = pt.audit
    with base_services.engine.connect() as conn:
        seq = conn.execute(select(a.c.seq).where(a.c.id == entry)).scalar_one()
    assert (seq is not None) == (base_services.engine.dialect.name == "sqlite")  # SQLite seals at once, PostgreSQL after commit
    jobs.queue.huey.execute(periodic["crmkit.audit.seal"])
    with base_services.engine.connect() as conn:
        assert conn.execute(select(a.c.seq).where(a.c.id == entry)).scalar_one() is not None
        report = verify_chain(conn)
    assert report.ok and report.pending == 0
