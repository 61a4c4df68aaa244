"""Helpers for the jobs, events, messaging and webhook tests."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from crmkit.runtime.db import write_transaction
from crmkit.runtime.storage import platform_tables as pt


def make_due(services, job_id: int) -> None:
    """Skip a retry's backoff wait (the delay itself is asserted where it matters)."""
    with write_transaction(services.engine) as conn:
        conn.execute(update(pt.job).where(pt.job.c.id == job_id).values(run_after=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)))


def run_until_settled(services, *, rounds: int = 10) -> None:
    """Run jobs and dispatch events until nothing is due (each retry made due at once)."""
    for _ in range(rounds):
        services.background.outbox.dispatch()
        ran = services.jobs.work_once()
        with write_transaction(services.engine) as conn:
            conn.execute(update(pt.job).where(pt.job.c.status == "queued").values(run_after=None))
        if not ran and not services.background.outbox.pending():
            return
