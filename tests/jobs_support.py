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
