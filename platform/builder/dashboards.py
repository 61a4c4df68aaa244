"""The dashboard designer: a grid of report widgets and KPI cards (reports the designer may open), ordered and sized
on a 12-column grid, titled in zh/en, assigned to roles, with a live preview (htmx) and saved through the metadata
store (validated, versioned and audited like every document).

Designing needs the builder permission on some entity (admins have it). A template-shipped dashboard saved here
becomes a new version of its stored document, a local customisation that a template upgrade merges with; the
shipped JSON files are never written. An administrator may also add the dashboard to the assigned roles' workbench
defaults (the workbench's existing per-role favourites).
"""
from __future__ import annotations

import secrets

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from crmkit.runtime.errors import BadQuery, DefinitionError, PermissionDenied
from crmkit.runtime.i18n_text import localize, text
from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.meta.reports import compile_dashboard
from crmkit.runtime.permissions.rules import ab_role
from crmkit.runtime.web.i18n import current_locale

from .reports import acting, services, stored_body

dashboard_builder_blueprint = Blueprint("crmkit_dashboard_builder", __name__, template_folder="templates")

MAX_WIDGETS = 24  # the dashboard schema's limit
SPARE_SLOTS = 2
HEIGHTS = ("small", "medium", "large")
NEW_SLOTS = 4


@dashboard_builder_blueprint.before_request
def login_required():
    if not current_user.is_authenticated:
        return redirect(url_for(current_app.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.full_path))
    return None


def may_design_dashboards(actor) -> bool:
    from .views import builder

    return builder().can_build(actor)


def require_designer(actor) -> None:
    if not may_design_dashboards(actor):
        raise PermissionDenied(text("You may not design dashboards. Ask an administrator for the builder permission.",
                                    "你没有设计仪表板的权限，请联系管理员开通设计器权限。"))


def report_choices(actor) -> dict:
    """Report key → report, for every report the designer may open (the only ones a widget may show)."""
    from crmkit.runtime.reports.views import visible_reports

    return {r.key: r for r in sorted(visible_reports(services(), actor), key=lambda r: r.key)}


def role_names_all() -> list[str]:
    with services().engine.connect() as conn:
        return list(conn.execute(select(ab_role.c.name).order_by(ab_role.c.name)).scalars())


def _bad(en: str, zh: str, **kw):
    return BadQuery(text(en, zh, **kw))


def body_from_form(form, choices: dict, roles: list[str], original: dict | None = None) -> dict:
    """The dashboard the form describes; BadQuery naming the widget and the problem when an input is not acceptable."""
    rows = []
    for i in range(MAX_WIDGETS):
        key = (form.get(f"w{i}_report") or "").strip()
        if not key:
            continue
        n = i + 1
        if key not in choices:
            raise _bad("Widget {n}: there is no report '{key}' you may use.", "第 {n} 个组件：没有你可用的报表“{key}”。", n=n, key=key[:80])
        width = (form.get(f"w{i}_width") or "").strip()
        if not width.isdigit() or not 1 <= int(width) <= 12:
            raise _bad("Widget {n}: the width must be a whole number of columns from 1 to 12, not '{w}'.",
                       "第 {n} 个组件：宽度必须是 1 到 12 之间的整数列数，不能是“{w}”。", n=n, w=width[:20])
        height = form.get(f"w{i}_height") or "medium"
        if height not in HEIGHTS:
            raise _bad("Widget {n}: the height must be small, medium or large.", "第 {n} 个组件：高度只能是矮、中或高。", n=n)
        order = (form.get(f"w{i}_order") or str(n)).strip()
        if not order.lstrip("-").isdigit():
            raise _bad("Widget {n}: the order must be a whole number.", "第 {n} 个组件：顺序必须是整数。", n=n)
        widget = {"report": key, "width": int(width), "height": height}
        zh, en = (form.get(f"w{i}_title_zh") or "").strip()[:200], (form.get(f"w{i}_title_en") or "").strip()[:200]
        if zh or en:
            widget["title"] = {"zh": zh or en, "en": en or zh}
        rows.append((int(order), i, widget))
    if not rows:
        raise _bad("A dashboard needs at least one widget: choose a report.", "仪表板至少需要一个组件，请选择报表。")
    label_zh = (form.get("label_zh") or "").strip()[:200]
    label_en = (form.get("label_en") or "").strip()[:200]
    if not label_zh and not label_en:
        raise _bad("Give the dashboard a title.", "请填写仪表板名称。")
    body = {"name": "preview", "label": {"zh": label_zh or label_en, "en": label_en or label_zh},
            "widgets": [w for _, _, w in sorted(rows, key=lambda r: (r[0], r[1]))]}
    if original and original.get("description"):
        body["description"] = original["description"]
    picked = [r for r in form.getlist("roles") if r]
    unknown = [r for r in picked if r not in roles]
    if unknown:
        raise _bad("There is no role '{r}'.", "没有角色“{r}”。", r=unknown[0][:64])
    if picked:
        body["roles"] = picked[:50]
    return body


def editable_dashboard(actor, key: str):
    from crmkit.runtime.reports.views import can_view_dashboard

    svc = services()
    dash = svc.store.catalog().dashboard(key)  # unknown: 404
    body = stored_body("dashboard", key)
    if body is None or not can_view_dashboard(svc, actor, dash):
        raise PermissionDenied(text("You may not edit this dashboard.", "你无权编辑此仪表板。"))
    return body, dash


def form_values(body: dict | None) -> dict:
    if body is None:
        return {"label_zh": "", "label_en": "", "widgets": [], "roles": []}
    label = body.get("label") or {}
    label = label if isinstance(label, dict) else {"zh": label, "en": label}
    widgets = []
    for w in body.get("widgets", ()):
        title = w.get("title") or {}
        title = title if isinstance(title, dict) else {"zh": title, "en": title}
        widgets.append({"report": w["report"], "width": w.get("width", 6), "height": w.get("height", "medium"),
                        "title_zh": title.get("zh", ""), "title_en": title.get("en", "")})
    return {"label_zh": label.get("zh", ""), "label_en": label.get("en", ""), "widgets": widgets, "roles": list(body.get("roles", ()))}


def render_designer(actor, body: dict | None, editing=None):
    values = form_values(body)
    slots = min(MAX_WIDGETS, max(NEW_SLOTS, len(values["widgets"]) + SPARE_SLOTS))
    return render_template("crmkit_dashboard_builder/designer.html", values=values, slots=range(slots), choices=report_choices(actor),
                           roles=role_names_all(), heights=HEIGHTS, editing=editing, is_admin=actor.is_admin,
                           versions=len(services().store.history("dashboard", editing.key)) if editing is not None else 0)


@dashboard_builder_blueprint.route("/builder/dashboards/new")
def designer():
    actor = acting()
    require_designer(actor)
    return render_designer(actor, None)


@dashboard_builder_blueprint.route("/builder/dashboards/<key>/edit")
def edit(key):
    actor = acting()
    require_designer(actor)
    body, dash = editable_dashboard(actor, key)
    return render_designer(actor, body, editing=dash)


def _app_for(body: dict, editing) -> str:
    return editing.app if editing is not None else body["widgets"][0]["report"].split(".", 1)[0]


@dashboard_builder_blueprint.route("/builder/dashboards/preview", methods=["POST"])
def preview():
    """Check the grid as the store would and render it with every widget run under the designer's own rights."""
    from crmkit.runtime.reports.views import dashboard_widgets

    actor, locale = acting(), current_locale()
    require_designer(actor)
    editing = None
    original = None
    if request.form.get("edit"):
        original, editing = editable_dashboard(actor, request.form["edit"])
    try:
        body = body_from_form(request.form, report_choices(actor), role_names_all(), original)
        app = _app_for(body, editing)
        services().store.preview([RawDocument("dashboard", app, body, "designer")])
    except BadQuery as exc:
        return render_template("crmkit_dashboard_builder/_preview.html", problems=[localize(exc.message, locale)], widgets=None)
    except DefinitionError as exc:
        return render_template("crmkit_dashboard_builder/_preview.html", problems=[m for _, _, m in exc.problems], widgets=None)
    dash = compile_dashboard(app, dict(body, roles=[]), "designer")
    return render_template("crmkit_dashboard_builder/_preview.html", problems=[], widgets=dashboard_widgets(services(), actor, dash, locale))


@dashboard_builder_blueprint.route("/builder/dashboards/save", methods=["POST"])
def save():
    """Save a new dashboard, or with ``edit=<key>`` a new version of an existing one; nothing is stored on bad input."""
    svc, actor = services(), acting()
    require_designer(actor)
    editing, original = None, None
    if request.form.get("edit"):
        original, editing = editable_dashboard(actor, request.form["edit"])
    if request.form.get("workbench_default") and not actor.is_admin:
        raise PermissionDenied(text("Only administrators set the default workbench of a role.", "只有管理员可以设置角色的默认工作台。"))
    roles = role_names_all()
    body = body_from_form(request.form, report_choices(actor), roles, original)
    app = _app_for(body, editing)
    body["name"] = editing.name if editing is not None else "d_" + secrets.token_hex(4)
    try:
        svc.store.save([RawDocument("dashboard", app, body, "designer")], actor_id=actor.id,
                       comment="dashboard designer: edit" if editing else "dashboard designer")
    except DefinitionError as exc:
        raise BadQuery(text("The dashboard is not valid: {problems}", "仪表板定义无效：{problems}",
                            problems="; ".join(m for _, _, m in exc.problems))) from None
    key = f"{app}.{body['name']}"
    if request.form.get("workbench_default") and body.get("roles"):
        add_to_role_defaults(actor, key, body["roles"])
    return redirect(url_for("crmkit_reports.dashboard_view", key=key))


def add_to_role_defaults(actor, key: str, role_names: list[str]) -> None:
    """Append the dashboard to each role's workbench defaults (administrators only, as on /admin/workbench)."""
    from crmkit.runtime.workbench import WorkbenchService

    svc = services()
    with svc.engine.connect() as conn:
        ids = dict(conn.execute(select(ab_role.c.name, ab_role.c.id).where(ab_role.c.name.in_(role_names))).all())
    wb = WorkbenchService(svc.engine)
    current = wb.role_defaults()
    for name in role_names:
        role_id = ids[name]
        favs = [(f.get("kind"), f.get("target")) for f in current.get(role_id, [])]
        if ("dashboard", key) not in favs:
            wb.set_role_default(role_id, favs + [("dashboard", key)], actor_id=actor.id)
