"""The ``crmkit_webhooks`` blueprint: administrators create, list, test and delete webhooks and read deliveries."""
from __future__ import annotations

from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from ..audit.views import require_admin
from ..db import read_transaction
from ..errors import ValidationFailed
from ..i18n_text import localize, text
from ..org.tables import ab_role
from ..web.i18n import current_locale
from .service import EVENT_TYPES

webhooks_blueprint = Blueprint("crmkit_webhooks", __name__, url_prefix="/admin/webhooks")

STATUS_COLOURS = {"pending": "#71717a", "delivered": "#16a34a", "retrying": "#ca8a04", "failed": "#dc2626"}


def _services():
    return current_app.extensions["crmkit"]


def _roles() -> list[dict]:
    with read_transaction(_services().engine) as conn:
        return [dict(r) for r in conn.execute(select(ab_role.c.id, ab_role.c.name).order_by(ab_role.c.name)).mappings()]


def _page(form=None, errors=None, secret=None, created=None, status=200):
    services = _services()
    catalog = services.store.catalog()
    locale = current_locale()
    entities = [(key, e.label.get(locale)) for key, e in sorted(catalog.entities.items()) if not e.is_child]
    labels = dict(entities)
    roles = _roles()
    role_names = {r["id"]: r["name"] for r in roles}
    hooks = [{**h, "entity_label": labels.get(h["entity"], h["entity"]), "owner": role_names.get(h["owner_role_id"]) or f"user #{h['owner_user_id']}"}
             for h in services.webhooks.list()]
    errors = {k: [localize(m, locale) for m in v] for k, v in (errors or {}).items()}
    return render_template("crmkit/webhooks/list.html", hooks=hooks, entities=entities, roles=roles, event_types=EVENT_TYPES,
                           form=form or {"events": list(EVENT_TYPES)}, errors=errors, secret=secret, created=created), status


@webhooks_blueprint.route("/", methods=["GET", "POST"])
def webhook_list():
    actor = require_admin()
    if request.method == "GET":
        return _page()
    form = {"name": request.form.get("name", ""), "url": request.form.get("url", ""), "entity": request.form.get("entity", ""),
            "events": request.form.getlist("events"), "owner_role_id": request.form.get("owner_role_id", "")}
    try:
        hook, secret = _services().webhooks.create(form, actor)
    except ValidationFailed as exc:
        return _page(form, exc.field_errors, status=422)
    return _page(secret=secret, created=hook)


@webhooks_blueprint.route("/<hook_id>")
def webhook_detail(hook_id):
    require_admin()
    services = _services()
    hook = services.webhooks.get(hook_id)
    tz = ZoneInfo(services.settings.timezone)
    rows = [{**d, "local_at": d["created_at"].astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"), "colour": STATUS_COLOURS.get(d["status"], "#71717a")}
            for d in services.webhooks.deliveries(hook["id"])]
    role = next((r["name"] for r in _roles() if r["id"] == hook["owner_role_id"]), None)
    polling = any(d["status"] in ("pending", "retrying") for d in rows)
    template = "crmkit/webhooks/_deliveries.html" if request.headers.get("HX-Target") == "deliveries" else "crmkit/webhooks/detail.html"
    return render_template(template, hook=hook, rows=rows, role=role, polling=polling)


@webhooks_blueprint.route("/<hook_id>/test", methods=["POST"])
def webhook_test(hook_id):
    actor = require_admin()
    _services().webhooks.send_test(_services().webhooks.get(hook_id)["id"], actor)
    flash(localize(text("A test delivery was queued; its result appears below.", "已排队发送测试投递，结果显示在下方。"), current_locale()), "success")
    return redirect(url_for("crmkit_webhooks.webhook_detail", hook_id=hook_id))


@webhooks_blueprint.route("/<hook_id>/delete", methods=["POST"])
def webhook_delete(hook_id):
    actor = require_admin()
    _services().webhooks.delete(_services().webhooks.get(hook_id)["id"], actor)
    return redirect(url_for("crmkit_webhooks.webhook_list"))
