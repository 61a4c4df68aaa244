"""CSV export of a list view: its current filters, search, sort and visible columns.

Rows come from the query service page by page (so row scopes, hidden fields and masking
apply exactly as on the page), cells that a spreadsheet would run as a formula get a
leading apostrophe, and every export is an ``export`` audit event.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, redirect, request, url_for
from flask_login import current_user

from ..audit import record_event_now
from ..errors import PermissionDenied
from .actors import current_actor
from .display import field_def, field_label
from .entity_views import ListState, entity_of
from .filters_ui import filter_tree
from .i18n import current_locale

export_blueprint = Blueprint("crmkit_export", __name__)

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PAGE = 200
MAX_ROWS = 50_000


def neutralise(value: str) -> str:
    """A cell a spreadsheet would evaluate (=, +, -, @, tab, CR first) is prefixed with ' so it stays text."""
    return "'" + value if value and value.startswith(FORMULA_STARTS) else value


def cell_text(catalog, entity, name: str, row: dict, locale: str, timezone: str) -> str:
    value = row.get(name)
    if value is None or value == "" or value == []:
        return ""
    label = (row.get("_labels") or {}).get(name)
    if label is not None:
        return str(label)
    if isinstance(value, dt.datetime):
        return value.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")
    f = field_def(catalog, entity, name)
    if f is None:
        return str(value)
    return catalog.type_of(f).display(f, value, locale)


@export_blueprint.route("/e/<entity_key>/export.csv")
def export_csv(entity_key: str):
    if not current_user.is_authenticated:
        return redirect(url_for(current_app.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.full_path))
    actor = current_actor()
    if actor is None:
        raise PermissionDenied("Log in first.")
    services = current_app.extensions["crmkit"]
    entity = entity_of(entity_key)
    services.policy.check(actor, entity, "read")
    services.policy.check(actor, entity, "export")
    catalog = services.store.catalog()
    locale = current_locale()
    view = catalog.view(entity)
    state = ListState.from_args(request.args)
    readable = services.policy.readable_fields(actor, entity)
    columns = [c for c in view.columns if c in readable or c in ("created_at", "updated_at")]
    tree = filter_tree(view, state.conditions, state.match, state.saved or None)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([neutralise(field_label(catalog, entity, c, locale)) for c in columns])
    cursor, count = None, 0
    while count < MAX_ROWS:
        page = services.queries.list(entity.key, actor, filter=tree, sort=state.sort or None, search=state.q or None,
                                     cursor=cursor, limit=PAGE, count="none")
        for r in page.rows:
            writer.writerow([neutralise(cell_text(catalog, entity, c, r, locale, services.settings.timezone)) for c in columns])
        count += len(page.rows)
        cursor = page.next_cursor
        if not cursor:
            break
    record_event_now(services.engine, category="export", action="export_csv", actor_id=actor.id, entity=entity.key,
                     subject=f"{count} rows", changes={"rows": count, "columns": columns, "filter": tree, "search": state.q or None,
                                                       "sort": state.sort or None}, ip=request.remote_addr)
    filename = f"{entity.key}-{dt.date.today().isoformat()}.csv"
    body = "\ufeff" + out.getvalue()  # BOM: Excel opens UTF-8 (Chinese text) correctly
    return Response(body, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                                        "Cache-Control": "no-store"})

