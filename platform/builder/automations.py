"""The automation designer (``/builder/automations``): edit an automation's JSON with the problems listed by
JSON pointer, and save it through the metadata store (validated against the whole catalog, versioned, audited as
a ``publish`` event). Needs the builder permission on the automation's entity (or administrator).
"""
from __future__ import annotations

import json

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from ..runtime.errors import DefinitionError, PermissionDenied
from ..runtime.i18n_text import text
from ..runtime.meta.compile import RawDocument
from ..runtime.storage import platform_tables as pt
from ..runtime.web.actors import current_actor
from ..runtime.web.entity_views import LOG_IN_FIRST

automation_designer_blueprint = Blueprint("crmkit_builder_automations", __name__, url_prefix="/builder/automations",
                                          template_folder="templates")
MAX_JSON_CHARS = 100_000


def _services():
    return current_app.extensions["crmkit"]


def _actor():
    actor = current_actor()
    if actor is None:
        raise PermissionDenied(LOG_IN_FIRST)
    return actor


def may_design(actor, entity) -> bool:
    return actor.is_admin or _services().policy.allows(actor, entity, "builder")


NEEDS_BUILDER = text("Designing automations needs the builder permission. Ask an administrator for it.", "设计自动化需要“设计器”权限，请联系管理员开通。")


@automation_designer_blueprint.before_request
def login_and_permission():
    if not current_user.is_authenticated:
        return redirect(url_for(current_app.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.full_path))
    actor = _actor()
    catalog = _services().store.catalog()
    key = (request.view_args or {}).get("entity_key") or request.values.get("entity")
    entities = [catalog.entity(key)] if key else [e for e in catalog.entities.values() if not e.is_child]
    if not any(may_design(actor, e) for e in entities):
        raise PermissionDenied(NEEDS_BUILDER)
    return None


@automation_designer_blueprint.get("/")
def index():
    actor = _actor()
    catalog = _services().store.catalog()
    entities = [e for e in catalog.entities.values() if not e.is_child and may_design(actor, e)]
    rows = [{"entity": e, "automations": sorted(catalog.automations_of(e), key=lambda a: a.name)} for e in entities]
    return render_template("builder_automations/index.html", rows=rows, entities=entities)


def starter(entity, name: str) -> dict:
    return {"entity": entity.key, "name": name, "label": {"zh": name, "en": name}, "enabled": False,
            "trigger": {"type": "created"}, "condition": "",
            "actions": [{"message": {"channel": "in_app", "to": "$owner", "body": "{{ id }}"}}]}


def stored_body(key: str) -> dict | None:
    with _services().engine.connect() as conn:
        return conn.execute(select(pt.document.c.body).where(pt.document.c.kind == "automation", pt.document.c.key == key)).scalar()


@automation_designer_blueprint.get("/new")
def new():
    entity = _services().store.catalog().entity(request.args.get("entity", ""))
    name = (request.args.get("name") or "").strip()
    return redirect(url_for("crmkit_builder_automations.edit", entity_key=entity.key, name=name or "new_automation"))


@automation_designer_blueprint.get("/<entity_key>/<name>")
def edit(entity_key: str, name: str):
    entity = _services().store.catalog().entity(entity_key)
    body = stored_body(f"{entity.key}:{name}") or starter(entity, name)
    return _editor(entity, name, json.dumps(body, ensure_ascii=False, indent=2), saved=request.args.get("saved") == "1")


def _editor(entity, name, source: str, *, problems=(), status: int = 200, saved: bool = False):
    return render_template("builder_automations/editor.html", entity=entity, name=name, source=source, problems=list(problems),
                           saved=saved, exists=f"{entity.key}:{name}" in _services().store.catalog().automations), status


@automation_designer_blueprint.post("/<entity_key>/<name>")
def save(entity_key: str, name: str):
    svc = _services()
    entity = svc.store.catalog().entity(entity_key)
    source = request.form.get("definition") or ""
    problems = []
    body = None
    if len(source) > MAX_JSON_CHARS:
        problems.append(("designer", "", f"the definition is longer than {MAX_JSON_CHARS} characters"))
    else:
        try:
            body = json.loads(source)
        except json.JSONDecodeError as exc:
            problems.append(("designer", "", f"not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}"))
    if body is not None and not isinstance(body, dict):
        problems.append(("designer", "", "an automation is a JSON object"))
    elif body is not None:
        if body.get("entity") != entity.key:
            problems.append(("designer", "/entity", f"this page edits automations of {entity.key}; \"entity\" must be \"{entity.key}\""))
        if body.get("name") != name:
            problems.append(("designer", "/name", f"this page edits the automation '{name}'; to rename, create a new one"))
    if not problems:
        try:
            svc.store.save([RawDocument("automation", entity.app, body, f"designer:{entity.key}:{name}")], actor_id=_actor().id,
                           comment=(request.form.get("comment") or "automation designer")[:500])
        except DefinitionError as exc:
            problems = list(exc.problems)
    if problems:
        return _editor(entity, name, source, problems=problems, status=422)
    return redirect(url_for("crmkit_builder_automations.edit", entity_key=entity.key, name=name, saved=1))
