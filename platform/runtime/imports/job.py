"""The ``import.run`` job: runs (or resumes) an import run as the user who started it.

Written against the jobs interface (``handler(ctx, payload)``; ``ctx.progress``, ``ctx.cancel_requested``,
``ctx.services``). A retried job resumes after the checkpoint, so retries are safe.
"""
from __future__ import annotations

from .actor import actor_by_id
from .engine import ImportEngine

JOB_KIND = "import.run"


def run_import(ctx, payload: dict) -> dict:
    services = ctx.services
    engine = ImportEngine(services)
    run_id = int(payload["run_id"])
    info = engine.run_info(run_id)
    actor = actor_by_id(services.engine, info["created_by"])
    summary = engine.run(run_id, actor, progress=ctx.progress, cancel_requested=ctx.cancel_requested)
    return summary.to_json()


def register_import_jobs(registry) -> None:
    """Called by the composition root once the job registry exists."""
    registry.register(JOB_KIND, run_import)
