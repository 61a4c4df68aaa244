"""The report designer: pick a source, groups, measures and a chart, see a live preview on real data (htmx),
and save the definition through the metadata store (validated, versioned and audited like every document).

Shared reports need the builder permission on the source entity (admins have it); personal reports need the
``report`` permission on it, belong to their author and may be shared with roles.

Editing opens a saved report in the same form. Keys the form cannot express (filter, prompts, ratio measures,
labels, formats, the KPI comparison) are carried over from the stored body, so an edit never loses them. Saving in
place writes a new version of the stored document; for a template-shipped report that is a local customisation
(the shipped JSON stays untouched, the installed original is the base a template upgrade merges against).
"""
from __future__ import annotations

import secrets

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from crmkit.runtime.errors import BadQuery, CrmkitError, DefinitionError, PermissionDenied
from crmkit.runtime.i18n_text import localize, text
from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.meta.reports import BUCKETS, CHARTS, NUMERIC, ORDERED, SYSTEM_COLUMNS, compile_report
from crmkit.runtime.permissions.rules import ab_role
from crmkit.runtime.storage import platform_tables as pt
from crmkit.runtime.web.actors import current_actor
from crmkit.runtime.web.i18n import current_locale

report_builder_blueprint = Blueprint("crmkit_report_builder", __name__, template_folder="templates")

GROUP_SLOTS = 3
MEASURE_SLOTS = 3
AGGS = ("count", "count_distinct", "sum", "avg", "min", "max")
UNGROUPABLE = ("multi_select", "tags", "attachment", "long_text", "child_table")


def services():
    return current_app.extensions["crmkit"]


def acting():
    actor = current_actor()
    if actor is None:
        raise PermissionDenied(text("Log in first.", "请先登录。"))
    return actor


@report_builder_blueprint.before_request
def login_required():
    if not current_user.is_authenticated:
        return redirect(url_for(current_app.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.full_path))
    return None


def may_design(actor, entity, personal: bool) -> bool:
    policy = services().policy
    if not policy.allows(actor, entity, "read"):
        return False
    return policy.allows(actor, entity, "builder") or (personal and policy.allows(actor, entity, "report"))


def sources(actor) -> list:
    catalog = services().store.catalog()
    ordered = [e for _app, items in catalog.menu() for e, _label in items]  # menu order first, then the rest
    ordered += [e for e in catalog.entities.values() if e not in ordered]
    return [e for e in ordered if not e.is_child and (may_design(actor, e, True) or may_design(actor, e, False))]


def field_paths(actor, entity, locale: str) -> list[dict]:
    """Groupable / measurable paths the actor may use: the entity's fields, then one hop through each link."""
    svc = services()
    catalog = svc.store.catalog()
    out = [{"path": n, "label": f.label.get(locale), "type": f.type} for n, f in SYSTEM_COLUMNS.items() if n in ("created_at", "owner_id", "org_unit_id")]

    def usable(ent):
        comparable = svc.policy.comparable_fields(actor, ent)
        return [f for f in ent.fields if f.name in comparable and catalog.type_of(f).stored and f.type not in UNGROUPABLE]

    for f in usable(entity):
        out.append({"path": f.name, "label": f.label.get(locale), "type": f.type})
        target = catalog.entities.get(f.opt("target")) if f.type == "link" else None
        if target is not None and svc.policy.allows(actor, target, "read"):
            for tf in usable(target):
                out.append({"path": f"{f.name}.{tf.name}", "label": f"{f.label.get(locale)} · {tf.label.get(locale)}", "type": tf.type})
    return out


def stored_body(kind: str, key: str) -> dict | None:
    """The live JSON of one stored document (None when there is none)."""
    with services().engine.connect() as conn:
        return conn.execute(select(pt.document.c.body).where(pt.document.c.kind == kind, pt.document.c.key == key)).scalar()


def body_from_form(form, actor) -> tuple[dict, bool]:
    """The report definition the form describes, and whether it is personal."""
    source = form.get("source", "")
    label_zh = (form.get("label_zh") or "").strip()[:200] or "未命名报表"
    label_en = (form.get("label_en") or "").strip()[:200] or label_zh
    personal = form.get("scope", "personal") == "personal"
    groups = []
    for i in range(GROUP_SLOTS):
        path = form.get(f"g{i}", "")
        if path:
            g = {"field": path}
            if form.get(f"g{i}b") in BUCKETS:
                g["bucket"] = form[f"g{i}b"]
            groups.append(g)
    measures = []
    for i in range(MEASURE_SLOTS):
        agg = form.get(f"m{i}_agg", "")
        if agg not in AGGS:
            continue
        name = form.get(f"m{i}_name", "")
        m = {"name": name if name.isidentifier() and name.isascii() and len(name) <= 40 else f"m{i}", "agg": agg}
        if agg != "count" or form.get(f"m{i}_field"):
            if form.get(f"m{i}_field"):
                m["field"] = form[f"m{i}_field"]
        measures.append(m)
    if not measures:
        measures = [{"name": "m0", "agg": "count"}]
    chart = form.get("chart", "table")
    body = {"name": form.get("name") or "", "label": {"zh": label_zh, "en": label_en}, "source": source, "groups": groups, "measures": measures}
    if chart == "table":
        body["output"] = {"type": "table"}
    elif chart == "pivot":
        body["output"] = {"type": "pivot"}
    elif chart in CHARTS:
        body["output"] = {"type": "chart", "chart": chart}
    if form.get("cols"):
        body["columns"] = {"field": form["cols"]}
    if form.get("sort_desc") and not (groups and groups[0].get("bucket")):  # time stays in time order
        body["sort"] = [{"by": measures[0]["name"], "dir": "desc"}]
    if (form.get("limit") or "").isdigit() and 1 <= int(form["limit"]) <= 1000:
        body["limit"] = int(form["limit"])
    if personal:
        body["owner"] = actor.id
        roles = [r for r in form.getlist("shared_roles") if r][:50]
        if roles:
            body["shared_roles"] = roles
    else:
        roles = [r for r in (form.getlist("roles") or form.getlist("shared_roles")) if r][:50]
        if roles:
            body["roles"] = roles
    return body, personal


def role_list() -> list[str]:
    with services().engine.connect() as conn:
        return list(conn.execute(select(ab_role.c.name).order_by(ab_role.c.name)).scalars())


def form_values(entity, paths: list[dict], body: dict | None) -> dict:
    """What the designer's inputs show: a fresh report's defaults, or a stored body's settings."""
    if body is None:
        default_group = next((p["path"] for p in paths if p["type"] in ("single_select", "link") and "." not in p["path"]), "")
        return {"label_zh": f"{entity.plural_label.zh}统计", "label_en": f"{entity.plural_label.en} summary",
                "groups": [{"field": default_group}] if default_group else [], "cols": "", "measures": [{"name": "m0", "agg": "count"}],
                "chart": "bar", "limit": "", "sort_desc": True, "scope": "personal", "roles": []}
    out = body.get("output", {})
    label = body.get("label") or {}
    label = label if isinstance(label, dict) else {"zh": label, "en": label}
    return {"label_zh": label.get("zh", ""), "label_en": label.get("en", ""), "groups": list(body.get("groups", ())),
            "cols": (body.get("columns") or {}).get("field", ""),
            "measures": [m for m in body.get("measures", ()) if m.get("agg") in AGGS][:MEASURE_SLOTS],
            "chart": out.get("chart") if out.get("type") == "chart" else out.get("type", "table"), "limit": body.get("limit") or "",
            "sort_desc": bool(body.get("sort")), "scope": "personal" if body.get("owner") is not None else "shared",
            "roles": list(body.get("shared_roles", ()) if body.get("owner") is not None else body.get("roles", ()))}


def merge_edit(original: dict, body: dict) -> dict:
    """The edited body plus what the form cannot express, taken from the stored ``original``."""
    for key in ("filter", "prompts", "description"):
        if key in original:
            body[key] = original[key]
    before = {m["name"]: m for m in original.get("measures", ())}
    for m in body["measures"]:
        old = before.get(m["name"])
        if old is not None and old.get("agg") == m["agg"] and old.get("field") == m.get("field"):  # same measure: same label
            m.update({k: old[k] for k in ("label", "format") if k in old})
    names = {m["name"] for m in body["measures"]}
    for m in original.get("measures", ()):  # computed measures stay while the measures they use do
        refs = [m.get(k) for k in ("of", "numerator", "denominator") if m.get(k)]
        if m.get("agg") not in AGGS and m["name"] not in names and refs and all(r in names for r in refs):
            body["measures"].append(m)
    old_groups = original.get("groups", ())
    for i, g in enumerate(body["groups"]):
        if i < len(old_groups) and old_groups[i].get("field") == g["field"] and "label" in old_groups[i]:
            g["label"] = old_groups[i]["label"]
    if body.get("columns") and (original.get("columns") or {}).get("field") == body["columns"]["field"]:
        body["columns"] = original["columns"]
    if original.get("sort") and body.get("sort"):
        body["sort"] = original["sort"]
    if (original.get("output") or {}).get("compare") and body["output"].get("chart") == "kpi":
        body["output"]["compare"] = original["output"]["compare"]
    return body


def editable_report(actor, key: str) -> tuple[dict, object]:
    """The stored body of a report the actor may change, and the compiled report; 403 otherwise."""
    from crmkit.runtime.reports.runner import can_view

    svc = services()
    report = svc.store.catalog().report(key)  # unknown: 404
    body = stored_body("report", key)
    entity = svc.store.catalog().entities.get(report.source)
    if body is None or entity is None or not can_view(svc, actor, report):
        raise PermissionDenied(text("You may not edit the report {name}.", "你无权编辑报表“{name}”。", name=report.label))
    own = report.owner is not None and report.owner == actor.id
    if not (may_design(actor, entity, False) or (own and may_design(actor, entity, True))):
        raise PermissionDenied(text("You may not edit the report {name}: shared reports need the builder permission on its source.",
                                    "你无权编辑报表“{name}”：共享报表需要数据源的设计器权限。", name=report.label))
    return body, report


def can_edit(actor, report) -> bool:
    try:
        editable_report(actor, report.key)
    except PermissionDenied:
        return False
    return True


def render_designer(actor, entity, choices, body: dict | None, editing=None):
    locale = current_locale()
    paths = field_paths(actor, entity, locale)
    history = len(services().store.history("report", editing.key)) if editing is not None else 0
    return render_template("crmkit_report_builder/designer.html", sources=choices, entity=entity, values=form_values(entity, paths, body),
                           paths=paths, buckets=BUCKETS, aggs=AGGS, charts=("table", "pivot") + CHARTS,
                           roles=role_list(), group_slots=range(GROUP_SLOTS), measure_slots=range(MEASURE_SLOTS),
                           can_share=may_design(actor, entity, False), numeric=NUMERIC, ordered=ORDERED,
                           editing=editing, versions=history)


@report_builder_blueprint.route("/builder/reports/new")
def designer():
    actor = acting()
    choices = sources(actor)
    if not choices:
        raise PermissionDenied(text("You may not design reports. Ask for the builder or personal-report permission.",
                                    "你没有设计报表的权限，请联系管理员开通设计器或个人报表权限。"))
    source = request.args.get("source") or choices[0].key
    entity = next((e for e in choices if e.key == source), choices[0])
    return render_designer(actor, entity, choices, None)


@report_builder_blueprint.route("/builder/reports/<key>/edit")
def edit(key):
    """The designer opened on a saved report (its source fixed), pre-filled from the stored definition."""
    actor = acting()
    body, report = editable_report(actor, key)
    entity = services().store.catalog().entity(report.source)
    return render_designer(actor, entity, [entity], body, editing=report)


@report_builder_blueprint.route("/builder/reports/preview", methods=["POST"])
def preview():
    """Validate the definition as the store would, then run it on real data under the designer's own rights."""
    from crmkit.runtime.reports import run_report
    from crmkit.runtime.reports.views import render_context

    svc, actor, locale = services(), acting(), current_locale()
    body, personal = body_from_form(request.form, actor)
    if request.form.get("edit"):
        original, editing = editable_report(actor, request.form["edit"])
        body = merge_edit(original, dict(body, source=editing.source))
    body["name"] = "preview"
    entity = svc.store.catalog().entity(body["source"])
    if not may_design(actor, entity, personal):
        raise PermissionDenied(text("You may not design reports on this source.", "你无权基于此数据源设计报表。"))
    app = entity.app
    try:
        svc.store.preview([RawDocument("report", app, body, "designer")])
        report = compile_report(app, body, "designer")
        if not personal:  # preview runs as the designer, whatever roles the report will be shown to
            report = compile_report(app, dict(body, owner=actor.id, roles=[]), "designer")
        result = run_report(svc, actor, report, {}, locale=locale)
    except DefinitionError as exc:
        return render_template("crmkit_report_builder/_preview.html", problems=[m for _, _, m in exc.problems], result=None)
    except (BadQuery, PermissionDenied) as exc:
        return render_template("crmkit_report_builder/_preview.html", problems=[localize(exc.message, locale)], result=None)
    ctx = render_context(report, result, locale)
    return render_template("crmkit_report_builder/_preview.html", problems=[], compact=False, **ctx)


@report_builder_blueprint.route("/builder/reports/save", methods=["POST"])
def save():
    """Save a new report, or with ``edit=<key>`` an edited one: in place (``mode=in_place``, a new version of the stored
    document) or as a new report (``mode=copy``)."""
    svc, actor = services(), acting()
    body, personal = body_from_form(request.form, actor)
    editing, original = None, None
    if request.form.get("edit"):
        original, editing = editable_report(actor, request.form["edit"])
        body["source"] = editing.source  # the source of an existing report does not change
        body = merge_edit(original, body)
    entity = svc.store.catalog().entity(body["source"])
    if not may_design(actor, entity, personal):
        raise PermissionDenied(text("You may not save reports on this source: shared reports need the builder permission, personal ones the personal-report permission.",
                                    "你无权保存基于此数据源的报表：共享报表需要设计器权限，个人报表需要个人报表权限。"))
    in_place = editing is not None and request.form.get("mode") == "in_place"
    if in_place:
        if (editing.owner is not None) != personal:
            raise BadQuery(text("Saving in place keeps the report personal or shared as it is; save a copy to change that.",
                                "原位保存不能改变报表的个人/共享属性，请另存为新报表。"))
        app, body["name"] = editing.app, editing.name
        if personal:
            body["owner"] = editing.owner  # an administrator editing someone's personal report leaves it theirs
    else:
        app, body["name"] = entity.app, ("u{}_".format(actor.id) if personal else "r_") + secrets.token_hex(4)
    comment = "report designer: edit in place" if in_place else (f"report designer: copy of {editing.key}" if editing else "report designer")
    try:
        svc.store.save([RawDocument("report", app, body, "designer")], actor_id=actor.id, comment=comment)
    except DefinitionError as exc:
        raise BadQuery(text("The report is not valid: {problems}", "报表定义无效：{problems}", problems="; ".join(m for _, _, m in exc.problems))) from None
    except CrmkitError:
        raise
    return redirect(url_for("crmkit_reports.report_view", key=f"{app}.{body['name']}"))
