"""The ``crmkit_notifications`` blueprint: the bell (unread count, polled by htmx), the list, mark read (CSRF)."""
from __future__ import annotations

from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from ..auth.redirects import local_path_of
from ..web.views import require_actor
from .notifications import list_notifications, mark_read, unread_count

notifications_blueprint = Blueprint("crmkit_notifications", __name__, url_prefix="/notifications")


def _engine():
    return current_app.extensions["crmkit"].engine


@notifications_blueprint.route("/bell")
def bell():
    actor = require_actor()
    return render_template("crmkit/notifications/_bell.html", unread=unread_count(_engine(), actor.id))


@notifications_blueprint.route("/")
def notification_list():
    actor = require_actor()
    tz = ZoneInfo(current_app.extensions["crmkit"].settings.timezone)
    rows = [{**r, "local_at": r["created_at"].astimezone(tz).strftime("%Y-%m-%d %H:%M"),
             "url": local_path_of(r["url"], request.host_url) if r["url"] else None}
            for r in list_notifications(_engine(), actor.id)]
    return render_template("crmkit/notifications/list.html", rows=rows, unread=sum(1 for r in rows if r["read_at"] is None))


@notifications_blueprint.route("/<int:notification_id>/read", methods=["POST"])
def read_one(notification_id: int):
    actor = require_actor()
    if actor.id is not None:  # a logged-in user always has an id; only service actors (webhooks) have none
        mark_read(_engine(), actor.id, notification_id)
    return _after()


@notifications_blueprint.route("/read-all", methods=["POST"])
def read_all():
    actor = require_actor()
    mark_read(_engine(), actor.id)
    return _after()


def _after():
    if request.headers.get("HX-Request"):
        return "", 204, {"HX-Refresh": "true"}
    return redirect(url_for("crmkit_notifications.notification_list"))


messages_admin_blueprint = Blueprint("crmkit_messages", __name__, url_prefix="/admin/messages")

DELIVERY_COLOURS = {"queued": "#71717a", "deferred": "#ca8a04", "sent": "#16a34a", "logged": "#0891b2", "refused": "#a16207", "failed": "#dc2626"}


@messages_admin_blueprint.route("/")
def delivery_log():
    """Administrators: every message asked for, with its outcome. Recipients are shown masked."""
    from ..audit.views import require_admin
    from ..permissions.masking import mask_value

    require_admin()
    services = current_app.extensions["crmkit"]
    tz = ZoneInfo(services.settings.timezone)
    rows = [{**d, "local_at": d["created_at"].astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
             "to": mask_value("email" if "@" in d["recipient"] else "mobile", d["recipient"]) if d["channel"] != "in_app" else f"user #{d['recipient']}",
             "colour": DELIVERY_COLOURS.get(d["status"], "#71717a")}
            for d in services.messaging.deliveries(limit=200)]
    return render_template("crmkit/notifications/deliveries.html", rows=rows)
