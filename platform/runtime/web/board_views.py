"""Kanban (records grouped by a single-select field) and calendar (records by a date field) pages.

Reads go through the query service (one query per column or per month), moves through the record
service with the card's row version, so a card someone else changed meanwhile is refused, not overwritten.
On a board grouped by a field a workflow owns, a move runs the workflow transition instead (``board_moves``).
"""
from __future__ import annotations

import calendar as cal
import datetime as dt

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, url_for

from ..errors import BadQuery, CrmkitError, StaleRecord, ValidationFailed
from ..i18n_text import localize, text
from ..meta.model import Label
from .board_moves import column_fields, move_by_transition, owning_workflow
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
    # Columns are filters on the field, so only a field the actor may filter on (not one they see masked) groups cards.
    choices = _fields_of(entity, ("single_select",), svc.policy.comparable_fields(actor, entity))
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
    wf = owning_workflow(catalog, entity, field)
    if wf is not None:  # transitions decide per card who may move it where; the field itself is read-only
        may_move = svc.policy.allows(actor, entity, "update") or any(not t.allowed.open for t in wf.transitions)
        dialogs = column_fields(wf, entity, locale)
    else:
        may_move, dialogs = field.name in svc.policy.writable_fields(actor, entity) and svc.policy.allows(actor, entity, "update"), {}
    return render_template("crmkit/kanban.html", entity=entity, field=field, choices=choices, columns=columns, cards=cards,
                           may_move=may_move, workflow=wf, dialogs=dialogs)


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
    wf = owning_workflow(svc.store.catalog(), entity, entity.field_map.get(field)) if field in entity.field_map else None
    fragment = bool(request.headers.get("HX-Request"))
    try:
        if wf is not None:
            values = {k[2:]: v for k, v in f.items() if k.startswith("v_") and v.strip()}
            result, t = move_by_transition(svc, entity, wf, record_id, version, f.get("value", ""), actor, values, f.get("comment", ""))
            message = (text("Sent for approval: {transition}. The card moves when it is approved.", "已提交审批：{transition}。审批通过后卡片才会移动。",
                            transition=t.label) if result.pending_approval else text("Done: {transition}.", "已完成：{transition}。", transition=t.label))
            if fragment:
                return jsonify(state=result.state, row_version=result.row_version, pending_approval=result.pending_approval,
                               message=localize(message, current_locale()))
            flash(localize(message, current_locale()), "success")
        else:
            svc.records.update(entity.key, record_id, {field: f.get("value") or None}, actor, expected_version=version)
    except CrmkitError as exc:
        if wf is None and not isinstance(exc, (StaleRecord, ValidationFailed)):
            raise
        msg = _message(exc, entity)
        if fragment:
            return msg, exc.status
        flash(msg, "error")
    return redirect(url_for("crmkit_boards.kanban", entity_key=entity.key, by=field)), 303


def _message(exc, entity) -> str:
    """One line for the board: a validation failure's messages, each after its field's label (a guard's message
    is under ``_schema`` and stands alone)."""
    locale = current_locale()
    if not (isinstance(exc, ValidationFailed) and exc.field_errors):
        return localize(exc.message, locale)
    parts: list[str] = []
    for name, msgs in exc.field_errors.items():
        f = entity.field_map.get(name)
        prefix = f"{f.label.get(locale)}: " if f is not None else ""
        parts.extend(prefix + localize(m, locale) for m in msgs)
    return " ".join(parts)


@board_blueprint.route("/e/<entity_key>/calendar")
def calendar_page(entity_key):
    svc = services()
    actor = acting()
    entity = entity_of(entity_key)
    svc.policy.check(actor, entity, "read")
    # The month is a filter on the date field: one the actor sees masked cannot place records (a masked birthday).
    choices = _fields_of(entity, ("date",), svc.policy.comparable_fields(actor, entity))
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
