"""Kanban (records grouped by a single-select field) and calendar (records by a date field) pages.

Reads go through the query service (one query per column or per month), moves through the record
service with the card's row version, so a card someone else changed meanwhile is refused, not overwritten.
"""
from __future__ import annotations

import calendar as cal
import datetime as dt

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from ..errors import BadQuery, StaleRecord, ValidationFailed
from ..i18n_text import localize, text
from ..meta.model import Label
from .entity_views import acting, entity_of
from .i18n import current_locale

board_blueprint = Blueprint("crmkit_boards", __name__)
CARDS_PER_COLUMN = 50


def services():
    return current_app.extensions["crmkit"]


def _fields_of(entity, types: tuple[str, ...], readable) -> list:
    return [f for f in entity.fields if f.type in types and f.name in readable]


@board_blueprint.route("/e/<entity_key>/kanban")
def kanban(entity_key):
    svc = services()
    actor = acting()
    entity = entity_of(entity_key)
    svc.policy.check(actor, entity, "read")
    readable = svc.policy.readable_fields(actor, entity)
    choices = _fields_of(entity, ("single_select",), readable)
    if not choices:
        raise BadQuery(text("{entity} has no single-select field to group cards by.", "{entity}没有可用于分组的单选字段。", entity=entity.label))
    field = next((f for f in choices if f.name == request.args.get("by")), choices[0])
    locale = current_locale()
    catalog = svc.store.catalog()
    shown = [c for c in catalog.view(entity).columns if c in readable and c not in (field.name, entity.title_field)][:3]
    columns = []
    for value, label, color in [(o["value"], Label.of(o["label"], o["value"]).get(locale), o.get("color")) for o in field.opt("options", ())] + [("", "—", None)]:
        flt = {"field": field.name, "op": "eq", "value": value} if value else {"field": field.name, "op": "is_empty"}
        page = svc.queries.list(entity.key, actor, filter=flt, limit=CARDS_PER_COLUMN, count="capped")
        if not value and not page.rows:
            continue
        columns.append({"value": value, "label": label, "color": color, "rows": page.rows, "total": page.total_label})
    from .display import field_label, row_cell

    cards = {r["id"]: [(field_label(catalog, entity, c, locale), row_cell(catalog, entity, c, r, locale)) for c in shown]
             for col in columns for r in col["rows"]}
    may_move = field.name in svc.policy.writable_fields(actor, entity) and svc.policy.allows(actor, entity, "update")
    return render_template("crmkit/kanban.html", entity=entity, field=field, choices=choices, columns=columns, cards=cards,
                           may_move=may_move)


@board_blueprint.route("/e/<entity_key>/kanban/move", methods=["POST"])
def kanban_move(entity_key):
    svc = services()
    actor = acting()
    entity = entity_of(entity_key)
    f = request.form
    field = f.get("field", "")
    try:
        record_id, version = int(f.get("record_id", "")), int(f.get("row_version", ""))
    except ValueError:
        raise BadQuery(text("The card to move is missing.", "缺少要移动的卡片。")) from None
    try:
        svc.records.update(entity.key, record_id, {field: f.get("value") or None}, actor, expected_version=version)
    except (StaleRecord, ValidationFailed) as exc:
        if request.headers.get("HX-Request"):
            return localize(exc.message, current_locale()), exc.status
        flash(localize(exc.message, current_locale()), "error")
    return redirect(url_for("crmkit_boards.kanban", entity_key=entity.key, by=field)), 303


@board_blueprint.route("/e/<entity_key>/calendar")
def calendar_page(entity_key):
    svc = services()
    actor = acting()
    entity = entity_of(entity_key)
    svc.policy.check(actor, entity, "read")
    readable = svc.policy.readable_fields(actor, entity)
    choices = _fields_of(entity, ("date",), readable)
    if not choices:
        raise BadQuery(text("{entity} has no date field to place records on a calendar.", "{entity}没有可用于日历的日期字段。", entity=entity.label))
    field = next((f for f in choices if f.name == request.args.get("by")), choices[0])
    try:
        month = dt.date.fromisoformat((request.args.get("month") or dt.date.today().strftime("%Y-%m")) + "-01")
    except ValueError:
        raise BadQuery(text("month is written YYYY-MM.", "月份格式为 YYYY-MM。")) from None
    last = month.replace(day=cal.monthrange(month.year, month.month)[1])
    page = svc.queries.list(entity.key, actor, filter={"field": field.name, "op": "between", "value": [month.isoformat(), last.isoformat()]},
                            sort=[field.name], limit=200, count="capped")
    by_day: dict[int, list] = {}
    for r in page.rows:
        day = r.get(field.name)
        day = dt.date.fromisoformat(day) if isinstance(day, str) else day
        if day:
            by_day.setdefault(day.day, []).append(r)
    weeks = cal.Calendar(firstweekday=0).monthdayscalendar(month.year, month.month)
    prev_month = (month - dt.timedelta(days=1)).strftime("%Y-%m")
    next_month = (last + dt.timedelta(days=1)).strftime("%Y-%m")
    return render_template("crmkit/calendar.html", entity=entity, field=field, choices=choices, month=month, weeks=weeks, by_day=by_day,
                           prev_month=prev_month, next_month=next_month, more=bool(page.next_cursor))
