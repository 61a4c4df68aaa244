"""Staff pages of the service template: service times (median and p90 of first response and resolution), overall
and per priority, read through the query service under the viewer's row scope (see ``service_stats``)."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template

from crmkit.runtime.web.i18n import current_locale
from crmkit.runtime.web.views import require_actor

from .service_stats import TICKET, service_times

service_blueprint = Blueprint("crm_service_pages", __name__, url_prefix="/crm/service", template_folder="templates")
PRIORITIES = ("urgent", "high", "normal", "low")


def can_read_tickets(services, actor) -> bool:
    catalog = services.store.catalog()
    return TICKET in catalog.entities and services.policy.allows(actor, catalog.entity(TICKET), "read")


@service_blueprint.route("/times")
def times():
    actor = require_actor()
    services = current_app.extensions["crmkit"]
    if not can_read_tickets(services, actor):
        abort(404 if TICKET not in services.store.catalog().entities else 403)
    entity = services.store.catalog().entity(TICKET)
    labels = {o["value"]: o["label"] for o in entity.field_map["priority"].opt("options", ())}
    rows = [(None, service_times(services, actor))]
    rows += [(labels.get(p, {"zh": p, "en": p}), service_times(services, actor, filter={"field": "priority", "op": "eq", "value": p})) for p in PRIORITIES]
    return render_template("crm_service/times.html", rows=rows, locale=current_locale())
