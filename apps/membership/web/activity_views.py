"""The activity page's panel (check-in by card or mobile, invitations, points, evaluation), the segment page's
member preview and the care campaign's start button. Reads go through the query service as the user; writes
through ``activities`` / ``segments`` / ``care`` (the record service and the ledger). Every POST carries CSRF."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, render_template, request

from crmkit.runtime.errors import CrmkitError, ValidationFailed
from crmkit.runtime.i18n_text import text
from crmkit.runtime.web.record_views import local_time
from crmkit.runtime.web.views import require_actor

from .. import activities, care, segments

activity_blueprint = Blueprint("membership_activity", __name__, url_prefix="/membership/activity",
                               template_folder=str(Path(__file__).parent / "templates"))


def _services():
    return current_app.extensions["crmkit"]


def _activity_panel(record_id: int, *, message=None, errors=None, result=None, status: int = 200):
    actor, services = require_actor(), _services()
    act = services.queries.get(activities.ACTIVITY, record_id, actor)
    catalog = services.store.catalog()
    recent = []
    if services.policy.allows(actor, catalog.entity(activities.REG), "read"):
        recent = services.queries.list(activities.REG, actor, filter={"and": [{"field": "activity", "op": "eq", "value": record_id},
                                                                             {"field": "status", "op": "eq", "value": "attended"}]},
                                       sort=["-checked_in_at"], limit=10, count="exact").rows
        for r in recent:
            r["when"] = local_time(r.get("checked_in_at"))
    may = {"check_in": services.policy.allows(actor, catalog.entity(activities.REG), "create"),
           "manage": services.policy.allows(actor, catalog.entity(activities.ACTIVITY), "update")}
    return render_template("membership/activity_panel.html", act=act, record_id=record_id, recent=recent, may=may, message=message,
                           errors=errors or {}, result=result), status


@activity_blueprint.route("/<int:record_id>/panel")
def activity_panel(record_id: int):
    return _activity_panel(record_id)


@activity_blueprint.route("/<int:record_id>/check-in", methods=["POST"])
def check_in(record_id: int):
    actor, services = require_actor(), _services()
    try:
        done = activities.check_in(services, record_id, actor, card_no=request.form.get("card_no"), mobile=request.form.get("mobile"))
    except ValidationFailed as exc:
        return _activity_panel(record_id, errors={k: v for k, v in exc.field_errors.items()}, status=422)
    except CrmkitError as exc:
        if exc.status == 403:
            raise
        return _activity_panel(record_id, errors={"_form": [exc.message]}, status=exc.status)
    return _activity_panel(record_id, message=text("{name} checked in.", "{name} 签到成功。", name=done["name"]))


@activity_blueprint.route("/<int:record_id>/<what>", methods=["POST"])
def run(record_id: int, what: str):
    actor, services = require_actor(), _services()
    steps = {"invite": activities.invite, "award": activities.award_points, "evaluate": activities.evaluate}
    if what not in steps:
        return _activity_panel(record_id, status=404)
    try:
        result = steps[what](services, record_id, actor)
    except CrmkitError as exc:
        if exc.status == 403:
            raise
        errs = exc.field_errors if isinstance(exc, ValidationFailed) else {"_form": [exc.message]}
        return _activity_panel(record_id, errors={"_form": [m for ms in errs.values() for m in ms]}, status=exc.status)
    return _activity_panel(record_id, result={"what": what, **{k: v for k, v in result.items()}})


@activity_blueprint.route("/segment/<int:record_id>/panel")
def segment_panel(record_id: int):
    actor, services = require_actor(), _services()
    try:
        res = segments.preview(services, record_id, actor, limit=20)
    except CrmkitError as exc:
        if exc.status == 403:
            raise
        return render_template("membership/segment_panel.html", error=exc.message, record_id=record_id, res=None)
    return render_template("membership/segment_panel.html", error=None, record_id=record_id, res=res)


@activity_blueprint.route("/care/<int:record_id>/start", methods=["POST"])
def care_start(record_id: int):
    actor, services = require_actor(), _services()
    try:
        res = care.start(services, record_id, actor)
    except CrmkitError as exc:
        if exc.status == 403:
            raise
        return render_template("membership/care_panel.html", record_id=record_id, error=exc.message, res=None, c=None), exc.status
    return render_template("membership/care_panel.html", record_id=record_id, error=None, res=res,
                           c=services.queries.get(care.CARE, record_id, actor))


@activity_blueprint.route("/care/<int:record_id>/panel")
def care_panel(record_id: int):
    actor, services = require_actor(), _services()
    return render_template("membership/care_panel.html", record_id=record_id, error=None, res=None, c=services.queries.get(care.CARE, record_id, actor))


from . import segment_builder  # noqa: E402,F401 - its routes join this blueprint
