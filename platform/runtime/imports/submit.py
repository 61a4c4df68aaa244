"""The hand-off from the import wizard to the job runner: a started import becomes an ``import.run`` job that a
worker runs (``crmkit worker``, or the one ``make run`` starts). A web request never runs a long import itself;
``crmkit import --resume RUN_ID`` runs a run from the command line."""
from __future__ import annotations

from ..actor import Actor
from .job import JOB_KIND


def submit_import(services, run_id: int, actor: Actor):
    """Hand the run to the job runner; returns the job id."""
    return services.jobs.submit(JOB_KIND, {"run_id": run_id}, actor=actor, dedupe_key=f"import:{run_id}")
