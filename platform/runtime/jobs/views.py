"""The ``crmkit_jobs`` blueprint: the jobs list (admins see all, users their own) and one job's status page.

The status region is a fragment that htmx re-fetches every second while the job is queued or running.
"""
from __future__ import annotations

from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from ..errors import ValidationFailed
from ..i18n_text import localize
from ..web.i18n import current_locale
from ..web.views import require_actor
from .service import FINISHED, STATUSES

jobs_blueprint = Blueprint("crmkit_jobs", __name__, url_prefix="/jobs")

STATUS_COLOURS = {"queued": "#71717a", "running": "#2563eb", "succeeded": "#16a34a", "failed": "#dc2626", "cancelled": "#a16207"}


def _services():
    return current_app.extensions["crmkit"]


def present(job: dict, actor, tz: ZoneInfo) -> dict:
    total, done = job["progress_total"], job["progress_done"] or 0
    percent = 100 if job["status"] == "succeeded" else (min(100, round(100 * done / total)) if total else None)
    error = job["error"] or ""
    return {
        **job,
        "percent": percent,
        "colour": STATUS_COLOURS.get(job["status"], "#71717a"),
        "finished": job["status"] in FINISHED,
        "can_cancel": job["status"] not in FINISHED and not job["cancel_requested"],
        # users see what went wrong; the traceback is for administrators
        "error_summary": error.split("\n", 1)[0],
        "error_detail": error if actor.is_admin else None,
        "created_local": _local(job["created_at"], tz),
        "started_local": _local(job["started_at"], tz),
        "finished_local": _local(job["finished_at"], tz),
        "retry_local": _local(job["run_after"], tz) if job["status"] == "queued" and job["attempts"] else None,
    }


def _local(value, tz):
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if value else None


@jobs_blueprint.route("/")
def job_list():
    actor = require_actor()
    services = _services()
    status = request.args.get("status") if request.args.get("status") in STATUSES else None
    before = request.args.get("before")
    before = int(before) if before and before.isdigit() and len(before) < 19 else None
    tz = ZoneInfo(services.settings.timezone)
    rows = [present(j, actor, tz) for j in services.jobs.list_for(actor, status=status, limit=51, before=before)]
    next_url = url_for("crmkit_jobs.job_list", status=status, before=rows[49]["id"]) if len(rows) > 50 else None
    active = any(not r["finished"] for r in rows[:50])
    ctx = dict(rows=rows[:50], status=status, statuses=STATUSES, next_url=next_url, actor=actor, active=active)
    if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "jobs-region":
        return render_template("crmkit/jobs/_list_region.html", **ctx)
    return render_template("crmkit/jobs/list.html", **ctx)


@jobs_blueprint.route("/<job_id>")
def job_detail(job_id):
    actor = require_actor()
    services = _services()
    job = present(services.jobs.get_for(job_id, actor), actor, ZoneInfo(services.settings.timezone))
    if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "job-status":
        return render_template("crmkit/jobs/_status.html", job=job)
    return render_template("crmkit/jobs/detail.html", job=job)


@jobs_blueprint.route("/<job_id>/cancel", methods=["POST"])
def job_cancel(job_id):
    actor = require_actor()
    services = _services()
    try:
        job = services.jobs.cancel(job_id, actor)
    except ValidationFailed as exc:
        flash(localize(next(iter(exc.field_errors.values()))[0], current_locale()), "error")
        return redirect(url_for("crmkit_jobs.job_detail", job_id=job_id))
    if request.headers.get("HX-Request"):
        return render_template("crmkit/jobs/_status.html", job=present(job, actor, ZoneInfo(services.settings.timezone)))
    return redirect(url_for("crmkit_jobs.job_detail", job_id=job["id"]))
