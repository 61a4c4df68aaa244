"""The ``crmkit_web`` blueprint: shell routes (home, locale) and the nav context.

Entity pages (list, detail, form, recycle bin) live in ``entity_views``.
"""
from __future__ import annotations

import logging

from pathlib import Path

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user

from ..actor import Actor
from ..auth.redirects import local_path_of
from ..errors import PermissionDenied
from ..i18n_text import localize
from .actors import current_actor
from .entity_views import LOG_IN_FIRST
from .i18n import SUPPORTED, current_locale, translate

web_blueprint = Blueprint(
    "crmkit_web", __name__, static_folder=str(Path(__file__).parent / "static"), static_url_path="/static/crmkit",
)


def services():
    return current_app.extensions["crmkit"]


def require_actor() -> Actor:
    """The logged-in actor; anonymous users are sent to the login page by ``login_required``."""
    actor = current_actor()
    if actor is None:
        raise PermissionDenied(LOG_IN_FIRST)
    return actor


@web_blueprint.app_template_filter("loc")
def localized(message):
    """``{{ message|loc }}``: a core message (``Text``) in the user's language; plain text as it is."""
    return localize(message, current_locale())


@web_blueprint.before_request
def login_required():
    if request.endpoint in ("crmkit_web.static", "crmkit_web.set_locale"):
        return None
    if not current_user.is_authenticated:
        return redirect(url_for(current_app.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.full_path))
    return None


MENU_DASHBOARDS = 12


@web_blueprint.app_context_processor
def shell_context():
    locale = current_locale()
    ctx = {"locale": locale, "t": lambda key, **kw: translate(key, locale, **kw), "nav": [], "admin_nav": []}
    actor = current_actor() if current_user and current_user.is_authenticated else None
    if actor is None:
        return ctx
    try:
        catalog = services().store.catalog()
    except Exception:  # platform tables missing: the page itself reports it
        return ctx
    path = request.path
    for app_def, items in catalog.menu():
        entries = []
        for entity, label in items:
            if services().policy.allows(actor, entity, "read"):
                url = url_for("crmkit_web.entity_list", entity_key=entity.key)
                entries.append({"label": label.get(locale), "url": url, "active": path.startswith(url), "icon": entity.icon})
        entries = app_links(app_def.id, actor, locale, path) + entries
        if entries:
            ctx["nav"].append({"title": app_def.title.get(locale), "items": entries})
    if ctx["nav"]:  # anyone who reads an entity may open the report center (each report checks its own rights)
        from ..reports.views import visible_dashboards

        items = [{"label": translate("report_center", locale), "url": url_for("crmkit_reports.reports_index"),
                  "active": path.startswith("/reports/"), "icon": "list"}]
        for dash in visible_dashboards(services(), actor)[:MENU_DASHBOARDS]:  # the dashboards assigned to the actor's roles
            url = url_for("crmkit_reports.dashboard_view", key=dash.key)
            items.append({"label": dash.label.get(locale), "url": url, "active": path.startswith(url), "icon": "dashboard"})
        ctx["nav"].append({"title": translate("reports", locale), "items": items})
    if actor.is_admin:
        ctx["admin_nav"] = [
            {"label": translate("users", locale), "url": url_for("UserDBModelView.list"), "active": path.startswith("/users/"), "icon": "user"},
            {"label": translate("roles", locale), "url": url_for("RoleModelView.list"), "active": path.startswith("/roles/"), "icon": "shield"},
            {"label": translate("org_structure", locale), "url": url_for("crmkit_org.tree"), "active": path.startswith("/admin/org"), "icon": "sitemap"},
            {"label": translate("perm_matrix", locale), "url": url_for("crmkit_permissions.matrix"), "active": path.startswith("/admin/permissions/") and "explain" not in path, "icon": "lock"},
            {"label": translate("perm_explain", locale), "url": url_for("crmkit_permissions.explain_page"), "active": path.startswith("/admin/permissions/explain"), "icon": "search"},
            {"label": translate("workbench_defaults", locale), "url": url_for("crmkit_workbench.role_defaults"), "active": path.startswith("/admin/workbench"), "icon": "star"},
            {"label": translate("audit_log", locale), "url": url_for("crmkit_audit.audit_log"), "active": path.startswith("/admin/audit"), "icon": "list"},
            {"label": translate("jobs", locale), "url": url_for("crmkit_jobs.job_list"), "active": path.startswith("/jobs/"), "icon": "layers"},
            {"label": translate("message_log", locale), "url": url_for("crmkit_messages.delivery_log"), "active": path.startswith("/admin/messages"), "icon": "bell"},
            {"label": translate("webhooks", locale), "url": url_for("crmkit_webhooks.webhook_list"), "active": path.startswith("/admin/webhooks"), "icon": "link"},
            {"label": translate("api_keys", locale), "url": url_for("crmkit_auth.api_keys_page"), "active": path == "/account/api-keys", "icon": "key"},
            {"label": translate("api_keys_all", locale), "url": url_for("crmkit_auth.api_keys_all"), "active": path.startswith("/account/api-keys/all"), "icon": "key"},
        ]
    return ctx


def app_links(app_id: str, actor, locale: str, path: str) -> list[dict]:
    """The sidebar links an installed app added with ``AppHooks.nav_link`` that this actor may see."""
    out = []
    for link in current_app.extensions.get("crmkit_nav_links", {}).get(app_id, []):
        try:
            shown = link.visible(services(), actor)
        except Exception:  # noqa: BLE001 - a failing app check hides its link, never the page
            logging.getLogger(__name__).exception("nav link %s failed", link.endpoint)
            shown = False
        if shown:
            url = url_for(link.endpoint)
            out.append({"label": link.label_zh if locale == "zh" else link.label_en, "url": url, "active": path.startswith(url), "icon": link.icon})
    return out


@web_blueprint.route("/locale/<locale>")
def set_locale(locale: str):
    if locale in SUPPORTED:
        session["locale"] = locale
    target = local_path_of(request.referrer, request.host_url) or url_for("crmkit_web.home")
    return redirect(target)


@web_blueprint.route("/home")
def home():
    actor = require_actor()
    svc = services()
    catalog = svc.store.catalog()
    locale = current_locale()
    cards = []
    for app_def, items in catalog.menu():
        entries = []
        for entity, label in items:
            if svc.policy.allows(actor, entity, "read"):
                page = svc.queries.list(entity.key, actor, limit=1, count="capped", labels=False)
                entries.append({"label": label.get(locale), "url": url_for("crmkit_web.entity_list", entity_key=entity.key),
                                "count": page.total_label, "icon": entity.icon})
        cards.append({"title": app_def.title.get(locale), "description": app_def.description.get(locale), "items": entries})
    from ..workbench.views import workbench_context

    return render_template("crmkit/home.html", cards=cards, actor=actor, workbench=workbench_context(actor, locale))


from .entity_views import register_entity_routes  # noqa: E402

register_entity_routes(web_blueprint)
