"""The ``crmkit_workflow`` blueprint: the workflow panel of a record (state, transition buttons with a dialog
for required fields and a comment, history), and the "My approvals" and "My tasks" inboxes.

Plain forms with CSRF tokens; htmx swaps the panel in place and follows ``HX-Redirect`` after a change.
"""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user

from ..errors import CrmkitError, PermissionDenied, ValidationFailed
from ..i18n_text import localize, text
from ..web.actors import current_actor
from ..web.entity_views import LOG_IN_FIRST, is_fragment_request
from ..web.i18n import current_locale
from . import people

workflow_blueprint = Blueprint("crmkit_workflow", __name__, url_prefix="/workflow")


def _services():
    return current_app.extensions["crmkit"]


def _actor():
    actor = current_actor()
    if actor is None:
        raise PermissionDenied(LOG_IN_FIRST)
    return actor


@workflow_blueprint.before_request
def login_required():
    if not current_user.is_authenticated:
        return redirect(url_for(current_app.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.full_path))
    return None


def _local(value) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(ZoneInfo(_services().settings.timezone)).strftime("%Y-%m-%d %H:%M")


# --- record panel ------------------------------------------------------------------------
def panel_context(entity_key: str, record_id: int, *, errors: dict | None = None, open_dialog: str | None = None, form: dict | None = None) -> dict:
    svc = _services()
    actor = _actor()
    catalog, entity, wf = svc.workflows.workflow(entity_key)
    record, available = svc.workflows.available(entity_key, record_id, actor)
    state = wf.state(record.get("workflow_state")) or wf.initial
    with svc.engine.connect() as conn:
        pending = svc.workflows.pending_request(conn, entity.key, record["id"])
    history = svc.workflows.history(entity_key, record_id, actor)
    locale = current_locale()
    fields = {}
    for a in available:
        fields[a.transition.name] = [{"name": tf.field, "label": entity.field(tf.field).label.get(locale), "required": tf.required,
                                      "long": entity.field(tf.field).type == "long_text"} for tf in a.transition.fields]
    return {"entity": entity, "wf": wf, "record": record, "state": state, "available": available, "fields": fields, "pending": pending,
            "pending_transition": wf.transition(pending["transition"]) if pending else None,
            "history": [dict(h, when=_local(h["at"]), from_def=wf.state(h["from_state"]), to_def=wf.state(h["to_state"]),
                             transition_def=wf.transition(h["transition"])) for h in history],
            "errors": errors or {}, "open_dialog": open_dialog, "form": form or {}}


@workflow_blueprint.get("/panel/<entity_key>/<int:record_id>")
def panel(entity_key: str, record_id: int):
    return render_template("crmkit/workflow/_panel.html", **panel_context(entity_key, record_id))


@workflow_blueprint.post("/panel/<entity_key>/<int:record_id>/<name>")
def run_transition(entity_key: str, record_id: int, name: str):
    svc = _services()
    actor = _actor()
    _, entity, wf = svc.workflows.workflow(entity_key)
    t = wf.transition(name)
    values = {}
    if t is not None:
        for tf in t.fields:
            raw = request.form.get(f"v_{tf.field}", "")
            if raw.strip():
                values[tf.field] = raw
    comment = request.form.get("comment", "")
    detail = url_for("crmkit_web.entity_detail", entity_key=entity.key, record_id=record_id)
    try:
        result = svc.workflows.transition(entity.key, record_id, name, actor, values=values, comment=comment)
    except ValidationFailed as exc:
        if is_fragment_request():
            ctx = panel_context(entity_key, record_id, errors=exc.field_errors, open_dialog=name, form={**request.form})
            return render_template("crmkit/workflow/_panel.html", **ctx), 422
        flash(_join_errors(exc.field_errors), "error")
        return redirect(detail, 303)
    except CrmkitError as exc:
        if is_fragment_request():
            ctx = panel_context(entity_key, record_id, errors={"_schema": [exc.message]}, form={**request.form})
            return render_template("crmkit/workflow/_panel.html", **ctx), 422
        flash(localize(exc.message, current_locale()), "error")
        return redirect(detail, 303)
    if result.pending_approval:
        flash(localize(text("Sent for approval.", "已提交审批。"), current_locale()), "success")
    else:
        flash(localize(text("Done: {transition}.", "已完成：{transition}。", transition=t.label), current_locale()), "success")
    return _go(detail)


def _go(url: str):
    if is_fragment_request():
        resp = make_response("", 200)
        resp.headers["HX-Redirect"] = url
        return resp
    return redirect(url, 303)


def _join_errors(errors: dict) -> str:
    locale = current_locale()
    return "；".join(localize(m, locale) for msgs in errors.values() for m in msgs) if locale == "zh" else \
        "; ".join(localize(m, locale) for msgs in errors.values() for m in msgs)


# --- inboxes -----------------------------------------------------------------------------
@workflow_blueprint.get("/approvals")
def approvals():
    svc = _services()
    actor = _actor()
    rows = svc.workflows.approvals(actor)
    for r in rows:
        r["when"] = _local(r["requested_at"])
        r["values_view"] = _values_view(r["entity_def"], r["field_values"])
    with svc.engine.connect() as conn:
        users = [(uid, label) for uid, label in people.active_users(conn) if uid != actor.id]
    return render_template("crmkit/workflow/approvals.html", rows=rows, users=users, delegations=svc.workflows.delegations(actor),
                           actor=actor, now=_local(dt.datetime.now(dt.timezone.utc)))


def _values_view(entity, values: dict) -> list[tuple[str, str]]:
    locale = current_locale()
    out = []
    for k, v in (values or {}).items():
        f = entity.field_map.get(k)
        out.append((f.label.get(locale) if f else k, "" if v is None else str(v)))
    return out


@workflow_blueprint.post("/approvals/<int:task_id>/decide")
def decide(task_id: int):
    svc = _services()
    decision = request.form.get("decision", "")
    try:
        status = svc.workflows.decide(task_id, decision, _actor(), request.form.get("comment", ""))
    except ValidationFailed as exc:
        flash(_join_errors(exc.field_errors), "error")
        return _go(url_for("crmkit_workflow.approvals"))
    except CrmkitError as exc:
        flash(localize(exc.message, current_locale()), "error")
        return _go(url_for("crmkit_workflow.approvals"))
    message = {"approved": text("Approved; the record moved on.", "已同意，记录已流转。"),
               "pending": text("Approved; it goes to the next approver.", "已同意，已转交下一位审批人。"),
               "rejected": text("Rejected.", "已驳回。"), "returned": text("Returned for changes.", "已退回修改。")}[status]
    flash(localize(message, current_locale()), "success")
    return _go(url_for("crmkit_workflow.approvals"))


@workflow_blueprint.post("/approvals/<int:task_id>/delegate")
def delegate(task_id: int):
    try:
        _services().workflows.delegate_task(task_id, _actor(), request.form.get("delegate_id"), request.form.get("comment", ""))
        flash(localize(text("Handed over.", "已转交。"), current_locale()), "success")
    except ValidationFailed as exc:
        flash(_join_errors(exc.field_errors), "error")
    except CrmkitError as exc:
        flash(localize(exc.message, current_locale()), "error")
    return _go(url_for("crmkit_workflow.approvals"))


def _parse_local(raw: str):
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(_services().settings.timezone))
    return value


@workflow_blueprint.post("/delegations")
def add_delegation():
    try:
        _services().workflows.add_delegation(_actor(), request.form.get("delegate_id"), _parse_local(request.form.get("starts_at", "")),
                                             _parse_local(request.form.get("ends_at", "")), request.form.get("note", ""))
        flash(localize(text("Delegation saved.", "委托已保存。"), current_locale()), "success")
    except ValidationFailed as exc:
        flash(_join_errors(exc.field_errors), "error")
    return _go(url_for("crmkit_workflow.approvals"))


@workflow_blueprint.post("/delegations/<int:delegation_id>/revoke")
def revoke_delegation(delegation_id: int):
    try:
        _services().workflows.revoke_delegation(_actor(), delegation_id)
        flash(localize(text("Delegation ended.", "委托已结束。"), current_locale()), "success")
    except CrmkitError as exc:
        flash(localize(exc.message, current_locale()), "error")
    return _go(url_for("crmkit_workflow.approvals"))


@workflow_blueprint.get("/tasks")
def tasks():
    rows = _services().workflows.tasks(_actor())
    for r in rows:
        r["when"] = _local(r["at"])
    return render_template("crmkit/workflow/tasks.html", rows=rows)


# --- org managers (the "manager of the owner" approver) ------------------------------------
@workflow_blueprint.route("/managers", methods=["GET", "POST"])
def managers():
    svc = _services()
    actor = _actor()
    if not actor.is_admin:
        raise PermissionDenied(text("Only administrators can set org managers.", "只有管理员可以设置组织负责人。"))
    if request.method == "POST":
        try:
            svc.workflows.set_managers(actor, request.form.get("unit_id"), request.form.getlist("managers"))
            flash(localize(text("Managers saved.", "负责人已保存。"), current_locale()), "success")
        except CrmkitError as exc:
            flash(_join_errors(exc.field_errors) if isinstance(exc, ValidationFailed) else localize(exc.message, current_locale()), "error")
        return redirect(url_for("crmkit_workflow.managers"), 303)
    from ..org.service import OrgService

    units = OrgService(svc.engine).units()
    with svc.engine.connect() as conn:
        users = people.active_users(conn)
        current = {u.id: set(people.unit_managers(conn, u.id)) for u in units}
    return render_template("crmkit/workflow/managers.html", units=units, users=users, current=current)


# --- shell hooks -------------------------------------------------------------------------
@workflow_blueprint.app_template_global("workflow_panel_url")
def workflow_panel_url(entity, record_id) -> str | None:
    """The panel's URL when the entity has a workflow (the record detail page loads it with htmx)."""
    try:
        catalog = _services().store.catalog()
    except Exception:  # platform tables missing: the page itself reports it
        return None
    if catalog.workflow_of(entity) is None:
        return None
    return url_for("crmkit_workflow.panel", entity_key=entity.key, record_id=record_id)


@workflow_blueprint.app_context_processor
def work_nav():
    """"My approvals" and "My tasks" in the sidebar, with counts."""
    if not request or request.endpoint is None or not current_user or not current_user.is_authenticated:
        return {}
    if request.headers.get("HX-Request") and not request.headers.get("HX-History-Restore-Request"):
        return {}  # fragments have no sidebar
    actor = current_actor()
    if actor is None:
        return {}
    try:
        svc = _services()
        if not svc.store.catalog().workflows:
            return {}
        approvals_n, tasks_n = svc.workflows.approval_count(actor), svc.workflows.task_count(actor)
    except Exception:  # platform tables missing: the page itself reports it
        return {}
    path = request.path
    return {"work_nav": [
        {"label": localize(text("My approvals", "我的审批"), current_locale()), "url": url_for("crmkit_workflow.approvals"), "icon": "check-circle",
         "count": approvals_n, "active": path.startswith("/workflow/approvals")},
        {"label": localize(text("My tasks", "我的待办"), current_locale()), "url": url_for("crmkit_workflow.tasks"), "icon": "inbox",
         "count": tasks_n, "active": path.startswith("/workflow/tasks")},
    ] + ([{"label": localize(text("Workflow designer", "流程设计器"), current_locale()), "url": url_for("crmkit_builder_workflows.index"),
           "icon": "layers", "count": None, "active": path.startswith("/builder/workflows")}] if _may_design_any(svc, actor) else [])
       + ([{"label": localize(text("Automations", "自动化"), current_locale()), "url": url_for("crmkit_builder_automations.index"),
            "icon": "activity", "count": None, "active": path.startswith(("/builder/automations", "/automations"))}] if _may_design_any(svc, actor) else [])
       + ([{"label": localize(text("Org managers", "组织负责人"), current_locale()), "url": url_for("crmkit_workflow.managers"),
            "icon": "users", "count": None, "active": path.startswith("/workflow/managers")}] if actor.is_admin else [])}


def _may_design_any(svc, actor) -> bool:
    return actor.is_admin or any(svc.policy.allows(actor, e, "builder") for e in svc.store.catalog().entities.values())


def register_workflow(app, csrf) -> None:
    from ...builder.workflows import workflow_designer_blueprint
    from .api import workflow_api_blueprint

    app.register_blueprint(workflow_blueprint)
    app.register_blueprint(workflow_designer_blueprint)
    csrf.exempt(workflow_api_blueprint)  # request_actor checks CSRF for cookie-authenticated calls
    app.register_blueprint(workflow_api_blueprint)
