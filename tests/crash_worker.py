"""`crmkit worker` with one extra job kind, for the crash test: ``python crash_worker.py`` (env configures it).

The job writes N rows into ``crmkit_sequence`` keyed ``crash:<tag>:<i>``, one per step, skipping keys that
already exist: idempotent by key, so a rerun after a crash adds nothing twice.
"""
from __future__ import annotations

import time

from sqlalchemy import select

from crmkit.runtime.db import write_transaction
from crmkit.runtime.storage import platform_tables as pt

KIND = "crash.write_rows"


def write_rows(ctx, payload):
    n, tag = payload["n"], payload["tag"]
    for i in range(n):
        key = f"crash:{tag}:{i}"
        with write_transaction(ctx.services.engine) as conn:
            if conn.execute(select(pt.sequence.c.key).where(pt.sequence.c.key == key)).first() is None:
                conn.execute(pt.sequence.insert().values(key=key, value=ctx.attempt))
        ctx.progress(i + 1, n, f"row {i + 1} of {n}")
        time.sleep(payload.get("sleep", 0))
    return {"rows": n}


def register(registry) -> None:
    registry.register(KIND, write_rows)


if __name__ == "__main__":
    from crmkit.runtime.cli import main

    main(["worker", "--workers", "1"], obj={"job_kinds": [register]})
