"""The workflow designer (``/builder/workflows``): a states-and-transitions editor with a server-rendered
SVG diagram, saving a ``workflow`` document through the metadata store (validated, versioned, audited).

Plain forms: every state and transition is a row of inputs, with blank rows to add more, so it works
without JavaScript; htmx refreshes the diagram and the problem list as you type. Approval steps, actions
and guard messages of a transition are edited as a small JSON object ("advanced"). Needs the builder
permission on the entity (``builder`` action on ``entity:<app>.<entity>``).
"""
from __future__ import annotations

import json
import re

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..runtime.errors import DefinitionError, PermissionDenied, RecordNotFound
from ..runtime.i18n_text import localize, text
from ..runtime.meta.compile import RawDocument
from ..runtime.web.actors import current_actor
from ..runtime.web.entity_views import LOG_IN_FIRST
from ..runtime.web.i18n import current_locale
from ..runtime.workflow.diagram import diagram_of

workflow_designer_blueprint = Blueprint("crmkit_builder_workflows", __name__, url_prefix="/builder/workflows", template_folder="templates")

BLANK_ROWS = 2
SPLIT = re.compile(r"[,，\s]+")


def _services():
    return current_app.extensions["crmkit"]


def _actor():
    actor = current_actor()
    if actor is None:
        raise PermissionDenied(LOG_IN_FIRST)
    return actor


def may_design(actor, entity) -> bool:
    return actor.is_admin or _services().policy.allows(actor, entity, "builder")


@workflow_designer_blueprint.before_request
def login_and_permission():
    if not current_user.is_authenticated:
        return redirect(url_for(current_app.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.full_path))
    actor = _actor()
    catalog = _services().store.catalog()
    key = (request.view_args or {}).get("entity_key")
    entities = [catalog.entity(key)] if key else [e for e in catalog.entities.values() if not e.is_child]
    if not any(may_design(actor, e) for e in entities):
        raise PermissionDenied(text("Designing workflows needs the builder permission. Ask an administrator for it.",
                                    "设计流程需要“设计器”权限，请联系管理员开通。"))
    return None


@workflow_designer_blueprint.get("/")
def index():
    actor = _actor()
    catalog = _services().store.catalog()
    rows = [{"entity": e, "workflow": catalog.workflow_of(e)} for e in catalog.entities.values() if not e.is_child and may_design(actor, e)]
    return render_template("builder_workflows/index.html", rows=rows)


def _starter(entity) -> dict:
    return {"entity": entity.key, "name": "main", "label": {"zh": f"{entity.label.zh}流程", "en": f"{entity.label.en} workflow"},
            "states": [{"name": "draft", "label": {"zh": "草稿", "en": "Draft"}, "color": "#3b82f6", "initial": True},
                       {"name": "done", "label": {"zh": "完成", "en": "Done"}, "color": "#10b981", "final": True}],
            "transitions": [{"name": "finish", "label": {"zh": "完成", "en": "Finish"}, "from": "draft", "to": "done"}]}


def _stored_body(entity) -> dict | None:
    from sqlalchemy import select

    from ..runtime.storage import platform_tables as pt

    wf = _services().store.catalog().workflow_of(entity)
    if wf is None:
        return None
    with _services().engine.connect() as conn:
        return conn.execute(select(pt.document.c.body).where(pt.document.c.kind == "workflow", pt.document.c.key == f"{entity.key}:{wf.name}")).scalar()


def _editor(entity, body: dict, *, problems=None, status: int = 200, saved: bool = False):
    locale = current_locale()
    problems = problems or []
    marks = {}
    for _, pointer, _ in problems:
        m = re.match(r"^/(states|transitions)/(\d+)", pointer or "")
        if m:
            marks.setdefault((m.group(1), int(m.group(2))), True)
    ctx = {"entity": entity, "body": body, "states": _state_rows(body), "transitions": _transition_rows(body), "problems": problems,
           "marks": marks, "diagram": diagram_of(body, locale), "fields": [f for f in entity.fields if _services().store.catalog().type_of(f).stored],
           "saved": saved}
    return render_template("builder_workflows/designer.html", **ctx), status


def _state_rows(body: dict) -> list[dict]:
    rows = [dict(s) for s in body.get("states", []) if isinstance(s, dict)]
    return rows + [{} for _ in range(BLANK_ROWS)]


def _transition_rows(body: dict) -> list[dict]:
    rows = []
    for t in body.get("transitions", []):
        if not isinstance(t, dict):
            continue
        allowed = t.get("allowed") or {}
        extra = {k: t[k] for k in ("approval", "actions", "guard_message") if k in t}
        rows.append({"name": t.get("name", ""), "label": t.get("label") or {}, "from": ", ".join(t["from"]) if isinstance(t.get("from"), list) else t.get("from", ""),
                     "to": t.get("to", ""), "roles": ", ".join(allowed.get("roles", [])), "users": ", ".join(allowed.get("users", [])),
                     "owner": allowed.get("owner", False), "manager": allowed.get("manager", False), "guard": t.get("guard", ""),
                     "fields": ", ".join(f["field"] + ("!" if f.get("required") else "") for f in t.get("fields", []) if isinstance(f, dict)),
                     "comment_required": t.get("comment") == "required", "extra": json.dumps(extra, ensure_ascii=False, indent=1) if extra else ""})
    return rows + [{} for _ in range(BLANK_ROWS)]


@workflow_designer_blueprint.get("/<entity_key>")
def edit(entity_key: str):
    entity = _services().store.catalog().entity(entity_key)
    if entity.is_child:
        raise RecordNotFound(text("Child tables have no workflow of their own.", "子表没有独立的流程。"))
    return _editor(entity, _stored_body(entity) or _starter(entity), saved=request.args.get("saved") == "1")


def body_from_form(entity, form) -> tuple[dict, list[tuple[str, str, str]]]:
    """The workflow document the form describes (blank rows dropped), and problems the form itself has
    (e.g. advanced JSON that does not parse), positioned like definition errors."""
    problems = []
    body = {"entity": entity.key, "name": (form.get("wf_name") or "main").strip(),
            "label": {"zh": form.get("wf_zh", "").strip(), "en": form.get("wf_en", "").strip()}, "states": [], "transitions": []}
    initial = form.get("initial", "")
    i = 0
    while f"s-{i}-name" in form:
        name = form.get(f"s-{i}-name", "").strip()
        if name:
            s = {"name": name, "label": {"zh": form.get(f"s-{i}-zh", "").strip() or name, "en": form.get(f"s-{i}-en", "").strip() or name}}
            if form.get(f"s-{i}-color", "").strip():
                s["color"] = form.get(f"s-{i}-color").strip()
            if initial == str(i):
                s["initial"] = True
            if form.get(f"s-{i}-final"):
                s["final"] = True
            body["states"].append(s)
        i += 1
    i = 0
    while f"t-{i}-name" in form:
        name = form.get(f"t-{i}-name", "").strip()
        if name:
            at = f"/transitions/{len(body['transitions'])}"
            sources = [s for s in SPLIT.split(form.get(f"t-{i}-from", "")) if s]
            t = {"name": name, "label": {"zh": form.get(f"t-{i}-zh", "").strip() or name, "en": form.get(f"t-{i}-en", "").strip() or name},
                 "from": sources[0] if len(sources) == 1 else sources, "to": form.get(f"t-{i}-to", "").strip()}
            allowed = {}
            roles = [r.strip() for r in form.get(f"t-{i}-roles", "").split(",") if r.strip()]
            users = [u for u in SPLIT.split(form.get(f"t-{i}-users", "")) if u]
            if roles:
                allowed["roles"] = roles
            if users:
                allowed["users"] = users
            if form.get(f"t-{i}-owner"):
                allowed["owner"] = True
            if form.get(f"t-{i}-manager"):
                allowed["manager"] = True
            if allowed:
                t["allowed"] = allowed
            if form.get(f"t-{i}-guard", "").strip():
                t["guard"] = form.get(f"t-{i}-guard").strip()
            fields = [f for f in SPLIT.split(form.get(f"t-{i}-fields", "")) if f]
            if fields:
                t["fields"] = [{"field": f.rstrip("!"), "required": True} if f.endswith("!") else {"field": f} for f in fields]
            if form.get(f"t-{i}-comment_required"):
                t["comment"] = "required"
            raw = form.get(f"t-{i}-extra", "").strip()
            if raw:
                try:
                    extra = json.loads(raw)
                except json.JSONDecodeError as exc:
                    problems.append(("designer", f"{at}/extra", f"advanced settings are not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}"))
                    extra = {}
                if not isinstance(extra, dict):
                    problems.append(("designer", f"{at}/extra", "advanced settings must be a JSON object with approval, actions or guard_message"))
                    extra = {}
                for k, v in extra.items():
                    t[k] = v
            body["transitions"].append(t)
        i += 1
    return body, problems


@workflow_designer_blueprint.post("/<entity_key>/preview")
def preview(entity_key: str):
    entity = _services().store.catalog().entity(entity_key)
    body, problems = body_from_form(entity, request.form)
    if not problems:
        problems = _problems(entity, body)
    return render_template("builder_workflows/_preview.html", diagram=diagram_of(body, current_locale()), problems=problems)


def _problems(entity, body) -> list:
    try:
        _services().store.preview([_document(entity, body)])
    except DefinitionError as exc:
        return [p for p in exc.problems]
    return []


def _document(entity, body) -> RawDocument:
    return RawDocument("workflow", entity.app, body, f"{entity.app}/workflows/{entity.name}.json")


@workflow_designer_blueprint.post("/<entity_key>")
def save(entity_key: str):
    svc = _services()
    entity = svc.store.catalog().entity(entity_key)
    body, problems = body_from_form(entity, request.form)
    if problems:
        return _editor(entity, body, problems=problems, status=422)
    old = svc.store.catalog().workflow_of(entity)
    docs = [_document(entity, body)]
    try:
        if old is not None and old.name != body["name"]:
            raise DefinitionError([(docs[0].source, "/name", f"the workflow of {entity.key} is called '{old.name}'; keep the name "
                                                             "(records refer to its states, not to its name, but one entity has one workflow)")])
        svc.store.save(docs, actor_id=_actor().id, comment=(request.form.get("comment") or "workflow designer")[:500])
    except DefinitionError as exc:
        return _editor(entity, body, problems=exc.problems, status=422)
    flash(localize(text("Workflow saved; it applies from now on.", "流程已保存，立即生效。"), current_locale()), "success")
    return redirect(url_for("crmkit_builder_workflows.edit", entity_key=entity.key, saved=1), 303)
