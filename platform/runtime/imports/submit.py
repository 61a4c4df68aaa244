"""THE integration point between the import wizard and the job runner.

When the jobs service is composed into ``Services`` (attribute ``jobs``), a started import is submitted as an
``import.run`` job and a worker runs it. Until then the run stays ``pending`` and the progress page says it waits
for a worker; ``crmkit import --resume RUN_ID`` (or, in tests, ``ImportEngine.run``) runs it. There is
deliberately no synchronous fallback here: a web request never runs a long import itself.
"""
from __future__ import annotations

from ..actor import Actor
from .job import JOB_KIND


def submit_import(services, run_id: int, actor: Actor) -> str | None:
    """Hand the run to the job runner; returns the job id, or None when no job runner is configured yet."""
    jobs = getattr(services, "jobs", None)
    if jobs is None:
        return None
    return jobs.submit(JOB_KIND, {"run_id": run_id}, actor=actor, dedupe_key=f"import:{run_id}")
