"""Automation pages: an entity's automations (enable/disable, run log, simulate), the record panel with the
manual buttons, and ``POST /api/v1/records/<entity>/<id>/automations/<name>``.

The entity page needs the builder permission on the entity (or administrator): it changes configuration and
simulate lists records. The record panel and the API need the entity's update permission.
"""
from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, flash, g, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from ..errors import PermissionDenied, ValidationFailed
from ..i18n_text import localize, text
from ..web.actors import current_actor
from ..web.entity_views import LOG_IN_FIRST, is_fragment_request
from ..web.i18n import current_locale

automations_blueprint = Blueprint("crmkit_automations", __name__, url_prefix="/automations", template_folder="templates")
automations_api_blueprint = Blueprint("crmkit_automations_api", __name__, url_prefix="/api/v1")

STATUS_COLOURS = {"running": "#3b82f6", "succeeded": "#10b981", "failed": "#ef4444"}


def _services():
    return current_app.extensions["crmkit"]


def _actor():
    actor = current_actor()
    if actor is None:
        raise PermissionDenied(LOG_IN_FIRST)
    return actor


def may_manage(actor, entity) -> bool:
    return actor.is_admin or _services().policy.allows(actor, entity, "builder")


def _entity_for_manager(entity_key: str):
    actor = _actor()
    entity = _services().store.catalog().entity(entity_key)
    if not may_manage(actor, entity):
        raise PermissionDenied(text("Managing automations needs the builder permission on {entity}.", "管理自动化需要{entity}的“设计器”权限。",
                                    entity=entity.label))
    return actor, entity


@automations_blueprint.before_request
def login_required():
    if not current_user.is_authenticated:
        return redirect(url_for(current_app.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.full_path))
    return None


def _local(value) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(ZoneInfo(_services().settings.timezone)).strftime("%Y-%m-%d %H:%M:%S")


def describe_trigger(a, entity, locale: str) -> str:
    """The trigger as a sentence in the user's language, with field labels."""
    return localize(_trigger_text(a, lambda name: entity.field_map[name].label.get(locale) if name in entity.field_map else name, locale), locale)


def _trigger_text(a, label, locale: str):
    t = a.trigger
    if t.type == "created":
        return text("When a record is created", "新建记录时")
    if t.type == "updated":
        return (text("When {fields} change", "{fields} 变更时", fields=", ".join(label(f) for f in t.fields)) if t.fields
                else text("When a record is updated", "记录更新时"))
    if t.type == "deleted":
        return text("When a record is deleted", "删除记录时")
    if t.type == "state_entered":
        return text("When the workflow enters '{state}'", "流程进入“{state}”时", state=t.state)
    if t.type == "date":
        if t.match == "month":
            return text("Every month, for records whose {field} is in that month", "每月，对{field}在当月的记录", field=label(t.field))
        when = abs(t.offset_days)
        if t.offset_days < 0:
            base = text("{n} days before {field}", "{field}前 {n} 天", n=when, field=label(t.field))
        elif t.offset_days > 0:
            base = text("{n} days after {field}", "{field}后 {n} 天", n=when, field=label(t.field))
        else:
            base = text("On {field}", "{field}当天", field=label(t.field))
        if t.match == "anniversary":
            return text("{base}, every year", "每年 {base}", base=localize(base, locale))
        return base
    if t.type == "schedule":
        return text("On the schedule {cron}", "按计划 {cron}", cron=t.cron)
    return text("A button on the record", "记录页上的按钮")


@automations_blueprint.get("/<entity_key>")
def entity_page(entity_key: str):
    _, entity = _entity_for_manager(entity_key)
    svc = _services()
    selected = request.args.get("log") or ""
    rows = []
    for a in svc.automations.for_entity(entity.key):
        rows.append({"a": a, "trigger": describe_trigger(a, entity, current_locale()), "actions": [act.kind for act in a.actions]})
    log_rows = []
    if selected:
        svc.automations.get(f"{entity.key}:{selected}")
        log_rows = [{**r, "local_started": _local(r["started_at"]), "local_finished": _local(r["finished_at"]),
                     "colour": STATUS_COLOURS.get(r["status"], "#71717a")} for r in svc.automations.runs(f"{entity.key}:{selected}")]
    return render_template("automations/entity.html", entity=entity, rows=rows, selected=selected, log_rows=log_rows,
                           designer=_designer_url(), locale=current_locale())


def _designer_url():
    try:
        return url_for("crmkit_builder_automations.index")
    except Exception:  # noqa: BLE001 - the designer blueprint is optional
        return None


@automations_blueprint.post("/<entity_key>/<name>/enabled")
def set_enabled(entity_key: str, name: str):
    actor, entity = _entity_for_manager(entity_key)
    enabled = request.form.get("enabled") == "1"
    _services().automations.set_enabled(f"{entity.key}:{name}", enabled, actor)
    flash(localize(text("Automation '{name}' is now on.", "自动化“{name}”已启用。", name=name) if enabled
                   else text("Automation '{name}' is now off.", "自动化“{name}”已停用。", name=name), current_locale()), "success")
    return redirect(url_for("crmkit_automations.entity_page", entity_key=entity.key))


@automations_blueprint.get("/<entity_key>/<name>/simulate")
def simulate(entity_key: str, name: str):
    _, entity = _entity_for_manager(entity_key)
    at_raw = (request.args.get("at") or "").strip()
    at = None
    if at_raw:
        try:
            day = dt.date.fromisoformat(at_raw)
        except ValueError:
            raise ValidationFailed({"at": [text("Give a date as YYYY-MM-DD.", "请按 YYYY-MM-DD 填写日期。")]}) from None
        tz = ZoneInfo(_services().settings.timezone)
        at = dt.datetime.combine(day, dt.time(9, 0), tzinfo=tz).astimezone(dt.timezone.utc)
    result = _services().automations.simulate(f"{entity.key}:{name}", at=at)
    tpl = "automations/_simulate.html"
    if not is_fragment_request():
        tpl = "automations/simulate.html"
    return render_template(tpl, entity=entity, name=name, result=result, at=at_raw)


# --- record panel: the manual automations of a record -------------------------------------------------
@automations_blueprint.get("/panel/<entity_key>/<int:record_id>")
def record_panel(entity_key: str, record_id: int):
    actor = _actor()
    svc = _services()
    entity = svc.store.catalog().entity(entity_key)
    buttons = [a for a in svc.automations.for_entity(entity.key) if a.trigger.type == "manual" and a.enabled]
    if not buttons or not svc.policy.allows(actor, entity, "update"):
        return ""
    return render_template("automations/_panel.html", entity=entity, record_id=record_id, buttons=buttons)


@automations_blueprint.post("/<entity_key>/<int:record_id>/run/<name>")
def run_from_page(entity_key: str, record_id: int, name: str):
    actor = _actor()
    result = _services().automations.run_manual(entity_key, record_id, name, actor, request_id=uuid.uuid4().hex)
    if result["status"] == "succeeded":
        flash(localize(text("Automation '{name}' ran.", "自动化“{name}”已运行。", name=name), current_locale()), "success")
    elif result["status"] == "failed":
        flash(localize(text("Automation '{name}' failed: {error}", "自动化“{name}”运行失败：{error}", name=name, error=result.get("error") or ""),
                       current_locale()), "error")
    else:
        flash(localize(text("Automation '{name}' did nothing: its condition is not met.", "自动化“{name}”未执行：条件不满足。", name=name),
                       current_locale()), "info")
    target = url_for("crmkit_web.entity_detail", entity_key=entity_key, record_id=record_id) if _has_detail() else "/"
    if is_fragment_request():
        resp = current_app.response_class("", 204)
        resp.headers["HX-Redirect"] = target
        return resp
    return redirect(target)


def _has_detail() -> bool:
    return "crmkit_web.entity_detail" in current_app.view_functions


# --- API ------------------------------------------------------------------------------------------------
@automations_api_blueprint.before_request
def authenticate():
    from ..api.auth import request_actor

    g.api_actor = request_actor()  # checks CSRF for cookie-authenticated changes


@automations_api_blueprint.post("/records/<entity_key>/<int:record_id>/automations/<name>")
def api_run(entity_key: str, record_id: int, name: str):
    request_id = (request.headers.get("X-Request-Id") or uuid.uuid4().hex)[:80]
    result = _services().automations.run_manual(entity_key, record_id, name, g.api_actor, request_id=request_id)
    body = {"automation": f"{entity_key}:{name}", "record_id": record_id, "status": result.get("status"),
            "occurrence": result.get("occurrence"), "result": result.get("result"), "error": result.get("error")}
    return jsonify(body), 200


def register_automations(app, csrf) -> None:
    app.register_blueprint(automations_blueprint)
    csrf.exempt(automations_api_blueprint)  # request_actor checks CSRF for cookie-authenticated calls
    app.register_blueprint(automations_api_blueprint)
