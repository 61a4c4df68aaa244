"""Entity list pages: list with search, filter builder, sort and keyset paging; bulk edit/delete; recycle bin.

Every read goes through ``services.queries`` and every write through ``services.records``.
An htmx request (``HX-Request``) for the list gets only the table region; everything
else, including htmx history restores, gets the full page.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for

from ..actor import Actor
from ..auth.redirects import is_safe_path
from ..errors import BadQuery, PermissionDenied, RecordNotFound, ValidationFailed
from ..query.computed import sql_computed
from ..i18n_text import localize, text
from ..meta.model import EntityDef
from .actors import current_actor
from .display import field_def, field_label, row_cell
from .filters_ui import Condition, chosen_filter, conditions_from_args, field_choices, filter_tree, value_widget
from .forms import editable
from .saved_filter_views import save_filter_context, saved_groups
from .i18n import current_locale, translate


LOG_IN_FIRST = text("Log in first.", "请先登录。")


def services():
    return current_app.extensions["crmkit"]


def acting() -> Actor:
    actor = current_actor()
    if actor is None:
        raise PermissionDenied(LOG_IN_FIRST)
    return actor


def entity_of(entity_key: str) -> EntityDef:
    """A top-level entity; child tables are edited through their parent, so they have no pages."""
    entity = services().store.catalog().entity(entity_key)
    if entity.is_child:
        raise RecordNotFound(text("{entity} rows are shown on their parent record's page.", "{entity}的行显示在其上级记录的页面上。", entity=entity.label))
    return entity


def is_fragment_request() -> bool:
    return bool(request.headers.get("HX-Request")) and not request.headers.get("HX-History-Restore-Request")


def safe_next(entity: EntityDef, candidate: str | None) -> str:
    """Only a path under this entity's pages is followed after a POST."""
    base = url_for("crmkit_web.entity_list", entity_key=entity.key)
    if is_safe_path(candidate) and candidate.startswith(base):
        return candidate
    return base


def page_size(args, default: int) -> int:
    raw = args.get("per_page")
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadQuery(text("per_page must be a whole number between 1 and 200.", "每页条数须为 1 到 200 之间的整数。")) from None


@dataclass
class ListState:
    q: str = ""
    sort: str = ""
    cursor: str = ""
    saved: str = ""
    match: str = "all"
    per_page: str = ""
    conditions: list = field(default_factory=list)

    @classmethod
    def from_args(cls, args) -> "ListState":
        return cls(q=args.get("q", "")[:200], sort=args.get("sort", "")[:200], cursor=args.get("cursor", "")[:2000],
                   saved=args.get("saved", "")[:64], match="any" if args.get("match") == "any" else "all",
                   per_page=args.get("per_page", "")[:4], conditions=conditions_from_args(args))

    def params(self, **over) -> dict:
        p: dict[str, Any] = {"q": self.q or None, "sort": self.sort or None, "saved": self.saved or None, "per_page": self.per_page or None,
             "match": "any" if self.match == "any" and self.conditions else None, "cursor": None}
        if self.conditions:
            p.update(ff=[c.field for c in self.conditions], fo=[c.op for c in self.conditions], fv=[c.value for c in self.conditions])
        p.update(over)
        return {k: v for k, v in p.items() if v not in (None, "")}


def sort_toggle(state: ListState, name: str) -> tuple[str, str]:
    """(sort parameter for the header link, current direction class)."""
    current = state.sort.split(",")[0] if state.sort else ""
    if current == name:
        return "-" + name, "asc"
    if current == "-" + name:
        return name, "desc"
    return name, ""


def register_entity_routes(bp):
    from .record_views import register_record_routes
    from .saved_filter_views import register_saved_filter_routes

    @bp.route("/e/<entity_key>/")
    def entity_list(entity_key):
        entity = entity_of(entity_key)
        return render_list(entity, ListState.from_args(request.args), deleted=False)

    @bp.route("/e/<entity_key>/bin")
    def entity_bin(entity_key):
        entity = entity_of(entity_key)
        return render_list(entity, ListState.from_args(request.args), deleted=True)

    @bp.route("/e/<entity_key>/filter-row")
    def entity_filter_row(entity_key):
        """One filter-builder row (htmx: added, or redrawn when its field or operator changes)."""
        entity = entity_of(entity_key)
        cond = Condition(request.args.get("ff", "")[:64], request.args.get("fo", "")[:32], request.args.get("fv", "")[:500])
        return render_template("crmkit/_filter_row.html", entity=entity, row=filter_row(entity, cond, acting()), first=False)

    @bp.route("/e/<entity_key>/bulk-value")
    def entity_bulk_value(entity_key):
        """The value input for the bulk edit bar, matching the chosen field."""
        entity = entity_of(entity_key)
        f = entity.field_map.get(request.args.get("bulk_field", ""))
        return render_template("crmkit/_bulk_value.html", widget=bulk_value_widget(entity, f))

    @bp.route("/e/<entity_key>/bulk", methods=["POST"])
    def entity_bulk(entity_key):
        entity = entity_of(entity_key)
        actor = acting()
        svc = services()
        back = safe_next(entity, request.form.get("next"))
        ids = request.form.getlist("ids")
        action = request.form.get("action", "")
        if not ids:
            flash(translate("select_first"), "error")
            return redirect(back, 303)
        try:
            if action == "delete":
                if request.form.get("confirmed") != "1":
                    return render_template("crmkit/bulk_confirm.html", entity=entity, ids=ids, next=back,
                                           label=entity.plural_label.get(current_locale()))
                n = svc.records.bulk_delete(entity.key, ids, actor)
                flash(translate("bulk_deleted", count=n), "success")
            elif action == "update":
                name = request.form.get("bulk_field", "")
                f = entity.field_map.get(name)
                if f is None or not editable(f, svc.policy.writable_fields(actor, entity)) or f.type in BULK_EXCLUDED:
                    raise ValidationFailed({"bulk_field": [translate("bulk_choose_field")]})
                values = request.form.getlist("bulk_value")
                value = [v for v in values if v] if f.type == "multi_select" else (values[-1] if values else "")
                n = svc.records.bulk_update(entity.key, ids, {name: value}, actor)
                flash(translate("bulk_done", count=n), "success")
            else:
                flash(translate("bulk_choose_action"), "error")
        except ValidationFailed as exc:
            flash(translate("bulk_failed") + " " + describe_errors(entity, exc.field_errors), "error")
        return redirect(back, 303)

    register_record_routes(bp)
    register_saved_filter_routes(bp)


BULK_EXCLUDED = {"child_table", "attachment"}


def describe_errors(entity: EntityDef, field_errors: dict) -> str:
    locale = current_locale()
    parts = []
    for key, msgs in field_errors.items():
        name = str(key).split(".")[0]
        f = entity.field_map.get(name)
        label = f.label.get(locale) if f else ("" if name in ("_schema", "bulk_field", "ids") else name)
        sep = "；" if locale == "zh" else "; "
        said = sep.join(localize(m, locale) for m in (msgs if isinstance(msgs, list) else [msgs]))
        parts.append((f"{label}：{said}" if locale == "zh" else f"{label}: {said}") if label else said)
    return " ".join(parts)


def bulk_value_widget(entity: EntityDef, f) -> dict:
    locale = current_locale()
    if f is None:
        return {"kind": "text"}
    catalog = services().store.catalog()
    if f.type == "link":
        return {"kind": "select", "options": [(str(i), label) for i, label in services().queries.options(f.opt("target"), acting(), limit=100)]}
    w = value_widget(catalog, f, "eq", locale)
    if f.type == "multi_select":
        return {"kind": "multi", "options": w["options"]}
    if f.type == "boolean":
        return w
    if f.type == "datetime":
        return {"kind": "datetime"}
    return w if w["kind"] != "none" else {"kind": "text"}


def filter_row(entity: EntityDef, cond: Condition, actor: Actor) -> dict:
    catalog = services().store.catalog()
    locale = current_locale()
    choices = field_choices(catalog, entity, services().policy.readable_fields(actor, entity), locale)
    chosen = next((c for c in choices if c.name == cond.field), None)
    op = cond.op if chosen and cond.op in dict(chosen.operators) else (chosen.operators[0][0] if chosen and chosen.operators else "")
    f = field_def(catalog, entity, cond.field) if chosen else None
    return {"field": cond.field if chosen else "", "op": op, "value": cond.value, "choices": choices,
            "operators": chosen.operators if chosen else (), "widget": value_widget(catalog, f, op, locale)}


def render_list(entity: EntityDef, state: ListState, *, deleted: bool):
    svc = services()
    actor = acting()
    catalog = svc.store.catalog()
    locale = current_locale()
    view = catalog.view(entity)
    readable = svc.policy.readable_fields(actor, entity)
    columns = [c for c in view.columns if c in readable or c in ("created_at", "updated_at")]
    page, query_error = None, None
    try:
        tree, saved_sort = None, None
        if not deleted:
            saved_tree, saved_sort = chosen_filter(view, state.saved or None, actor, svc.saved_filters)
            tree = filter_tree(saved_tree, state.conditions, state.match)
        page = svc.queries.list(entity.key, actor, filter=tree, sort=state.sort or saved_sort or None, search=state.q or None,
                                cursor=state.cursor or None, limit=page_size(request.args, view.page_size), deleted=deleted)
    except BadQuery as exc:
        query_error = exc.message
    endpoint = "crmkit_web.entity_bin" if deleted else "crmkit_web.entity_list"
    rows = []
    for r in (page.rows if page else []):
        rows.append({"id": r["id"], "row_version": r["row_version"], "deleted_at": r.get("deleted_at"),
                     "cells": [row_cell(catalog, entity, c, r, locale) for c in columns]})
    headers = []
    for c in columns:
        f = field_def(catalog, entity, c)
        sortable = f is not None and catalog.type_of(f).sortable and (catalog.type_of(f).stored or sql_computed(catalog, entity, c))
        sort_param, direction = sort_toggle(state, c)
        headers.append({"name": c, "label": field_label(catalog, entity, c, locale), "direction": direction,
                        "url": url_for(endpoint, entity_key=entity.key, **state.params(sort=sort_param)) if sortable else None,
                        "num": f is not None and f.type in ("integer", "decimal", "money", "percent")})
    pager = {
        "prev": url_for(endpoint, entity_key=entity.key, **state.params(cursor=page.prev_cursor)) if page and page.prev_cursor else None,
        "next": url_for(endpoint, entity_key=entity.key, **state.params(cursor=page.next_cursor)) if page and page.next_cursor else None,
        "total": page.total_label if page else "0",
    }
    writable = svc.policy.writable_fields(actor, entity)
    bulk_fields = [(f.name, f.label.get(locale)) for f in entity.fields
                   if editable(f, writable) and f.type not in BULK_EXCLUDED and catalog.type_of(f).stored]
    filter_rows = [filter_row(entity, c, actor) for c in state.conditions]
    if request.args.get("add_row") or not filter_rows:
        filter_rows.append(filter_row(entity, Condition("", "", ""), actor))
    ctx = {
        "entity": entity, "view": view, "state": state, "rows": rows, "headers": headers, "pager": pager, "deleted": deleted,
        "query_error": query_error, "filter_rows": filter_rows, "saved_groups": [] if deleted else saved_groups(view, actor, locale),
        "save_filter": None if deleted else save_filter_context(entity, actor),
        "bulk_fields": bulk_fields, "bulk_widget": bulk_value_widget(entity, None),
        "can": {a: svc.policy.allows(actor, entity, a) for a in ("create", "update", "delete", "export", "import")},
        "title": entity.plural_label.get(locale), "endpoint": endpoint,
        "current_url": request.full_path.rstrip("?"),
        "search_fields": "、".join(field_label(catalog, entity, n, locale) for n in entity.search_fields) if locale == "zh"
        else ", ".join(field_label(catalog, entity, n, locale) for n in entity.search_fields),
        "filters_open": bool(state.conditions) or bool(request.args.get("add_row")),
    }
    status = 422 if query_error else 200
    template = "crmkit/_list_region.html" if is_fragment_request() else "crmkit/entity_list.html"
    return render_template(template, **ctx), status
