"""Workbench pages: the sections of the start page, star and watch toggles (htmx), and the admin's role defaults."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from ..errors import BadQuery, PermissionDenied, RecordNotFound
from ..i18n_text import text
from ..permissions.rules import ab_role
from ..records.service import record_id_or_none
from ..web.actors import current_actor
from ..web.i18n import current_locale, translate
from .service import FAVORITE_KINDS, WorkbenchService

workbench_blueprint = Blueprint("crmkit_workbench", __name__)
WATCH_SHOWN = 20


def services():
    return current_app.extensions["crmkit"]


def workbench() -> WorkbenchService:
    return WorkbenchService(services().engine)


def acting():
    actor = current_actor()
    if actor is None:
        raise PermissionDenied(text("Log in first.", "请先登录。"))
    return actor


@workbench_blueprint.before_request
def login_required():
    if not current_user.is_authenticated:
        return redirect(url_for(current_app.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.full_path))
    return None


def function_choices(svc, actor, locale) -> list[dict]:
    """Everything a favourite may point at that this actor may open: entity lists, reports, dashboards."""
    from ..reports.views import visible_dashboards, visible_reports

    catalog = svc.store.catalog()
    out = []
    for _app, items in catalog.menu():
        for entity, label in items:
            if svc.policy.allows(actor, entity, "read"):
                out.append({"kind": "entity", "target": entity.key, "label": label.get(locale), "icon": entity.icon,
                            "url": url_for("crmkit_web.entity_list", entity_key=entity.key)})
    for d in visible_dashboards(svc, actor):
        out.append({"kind": "dashboard", "target": d.key, "label": d.label.get(locale), "icon": "grid",
                    "url": url_for("crmkit_reports.dashboard_view", key=d.key)})
    for r in visible_reports(svc, actor):
        out.append({"kind": "report", "target": r.key, "label": r.label.get(locale), "icon": "bar-chart",
                    "url": url_for("crmkit_reports.report_view", key=r.key)})
    return out


def workbench_context(actor, locale: str) -> dict:
    """The start page's sections: favourites (own, else the role default), watched records, pending work."""
    svc = services()
    wb = workbench()
    choices = {(c["kind"], c["target"]): c for c in function_choices(svc, actor, locale)}
    favs, own = wb.favorites(actor.id, actor.role_ids) if actor.id is not None else ([], True)
    favorites = [choices[f] for f in favs if f in choices]  # a favourite the actor may no longer open is not shown
    watched = []
    catalog = svc.store.catalog()
    for entity_key, ids in (wb.watched(actor.id) if actor.id is not None else {}).items():
        entity = catalog.entities.get(entity_key)
        if entity is None or not svc.policy.allows(actor, entity, "read"):
            continue
        title = entity.title_field if entity.title_field in svc.policy.readable_fields(actor, entity) else None
        page = svc.queries.list(entity_key, actor, filter={"field": "id", "op": "in", "value": ids[:WATCH_SHOWN]},
                                fields=[title] if title else [], limit=WATCH_SHOWN, count="none", labels=False, sort=["-updated_at"])
        for row in page.rows:  # only records the actor may still see
            f = entity.field(entity.title_field)
            label = catalog.type_of(f).display_text(f, row.get(title), locale) if title else ""
            watched.append({"label": label or f"#{row['id']}", "entity": entity.label.get(locale), "updated_at": row["updated_at"],
                            "url": url_for("crmkit_web.entity_detail", entity_key=entity_key, record_id=row["id"])})
    watched.sort(key=lambda w: w["updated_at"], reverse=True)
    return {"favorites": favorites, "favorites_own": own, "watched": watched[:WATCH_SHOWN],
            "choices": [c for k, c in choices.items() if k not in set(favs) or not own]}


# --- toggles -----------------------------------------------------------------------------------
@workbench_blueprint.route("/workbench/favorite", methods=["POST"])
def toggle_favorite():
    actor = acting()
    kind, target = request.form.get("kind", ""), request.form.get("target", "")[:200]
    if request.form.get("pick") and ":" in request.form["pick"]:  # the workbench's "add" select: kind:target
        kind, target = request.form["pick"].split(":", 1)
    if kind not in FAVORITE_KINDS:
        raise BadQuery(text("Unknown favourite.", "无法收藏此项。"))
    allowed = {(c["kind"], c["target"]) for c in function_choices(services(), actor, current_locale())}
    if (kind, target) not in allowed:
        raise PermissionDenied(text("You may not open this, so it cannot be a favourite.", "你无权打开此项，无法收藏。"))
    state = workbench().toggle_favorite(actor.id, kind, target)
    if request.headers.get("HX-Request"):
        return render_template("crmkit/workbench/_star.html", kind=kind, target=target, starred=state)
    back = request.form.get("next", "")
    return redirect(back if back.startswith("/") and not back.startswith("//") else url_for("crmkit_web.home"))


def _watch_target(entity_key: str, record_id: str):
    svc, actor = services(), acting()
    rid = record_id_or_none(record_id)
    if rid is None:
        raise RecordNotFound(text("No such record.", "记录不存在。"))
    svc.queries.get(entity_key, rid, actor)  # unreadable or missing → not found, like the record page
    return actor, rid


@workbench_blueprint.route("/workbench/watch/<entity_key>/<record_id>", methods=["GET", "POST"])
def watch_button(entity_key, record_id):
    actor, rid = _watch_target(entity_key, record_id)
    wb = workbench()
    watching = wb.toggle_watch(actor.id, entity_key, rid) if request.method == "POST" else wb.is_watching(actor.id, entity_key, rid)
    return render_template("crmkit/workbench/_watch.html", entity_key=entity_key, record_id=rid, watching=watching)


# --- role defaults (admin) ------------------------------------------------------------------------
@workbench_blueprint.route("/admin/workbench", methods=["GET", "POST"])
def role_defaults():
    actor = acting()
    if not actor.is_admin:
        raise PermissionDenied(text("Only administrators set the default workbench of a role.", "只有管理员可以设置角色的默认工作台。"))
    svc, locale = services(), current_locale()
    with svc.engine.connect() as conn:
        roles = conn.execute(select(ab_role.c.id, ab_role.c.name).order_by(ab_role.c.name)).all()
    choices = function_choices(svc, actor, locale)
    wb = workbench()
    if request.method == "POST":
        role_id = int(request.form.get("role_id", "0") or 0)
        if role_id not in {r.id for r in roles}:
            raise BadQuery(text("Choose a role.", "请选择角色。"))
        valid = {(c["kind"], c["target"]) for c in choices}
        picked = [tuple(v.split(":", 1)) for v in request.form.getlist("fav") if ":" in v]
        wb.set_role_default(role_id, [p for p in picked if p in valid], actor_id=actor.id)
        flash(translate("workbench_defaults_saved", locale), "success")
        return redirect(url_for("crmkit_workbench.role_defaults", role=role_id))
    current = wb.role_defaults()
    selected_role = int(request.args.get("role", roles[0].id if roles else 0) or 0)
    chosen = {(f["kind"], f["target"]) for f in current.get(selected_role, [])}
    return render_template("crmkit/workbench/defaults.html", roles=roles, selected_role=selected_role, choices=choices, chosen=chosen)
