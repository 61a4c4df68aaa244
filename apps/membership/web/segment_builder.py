"""Build a segment with the platform's filter builder (the member list's rows: field, operator, value; all / any).

GET shows the builder for the member entity with the conditions in the query string (``ff``/``fo``/``fv``/``match``,
the same parameters as the member list, so a list URL's query opens here unchanged) and the count of matching
members as the user sees them; POST saves the tree as a new segment or into an existing one (``segment``)."""
from __future__ import annotations

import json

from flask import current_app, redirect, render_template, request, url_for

from crmkit.runtime.errors import BadQuery, CrmkitError, ValidationFailed
from crmkit.runtime.i18n_text import text
from crmkit.runtime.web.entity_views import filter_row
from crmkit.runtime.web.filters_ui import Condition, conditions_from_args, conditions_tree
from crmkit.runtime.web.views import require_actor

from .. import segments
from .activity_views import activity_blueprint


def conditions_of(tree: dict | None) -> tuple[list[Condition], str]:
    """A flat tree (one condition, or one and/or list of conditions) as builder rows; deeper trees give no rows."""
    if not tree:
        return [], "all"
    key = "or" if "or" in tree else "and" if "and" in tree else None
    items = tree[key] if key else [tree]
    if any(not isinstance(c, dict) or "field" not in c for c in items):
        return [], "all"

    def shown(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return ",".join(shown(x) for x in v)
        return "" if v is None else str(v)

    return [Condition(c["field"], c.get("op", "eq"), shown(c.get("value"))) for c in items], "any" if key == "or" else "all"


def _page(*, conditions, match, name="", segment_id=None, count=None, errors=None, status=200):
    actor, services = require_actor(), current_app.extensions["crmkit"]
    member = services.store.catalog().entity(segments.MEMBER)
    rows = [filter_row(member, c, actor) for c in conditions] or [filter_row(member, Condition("", "", ""), actor)]
    return render_template("membership/segment_builder.html", entity=member, filter_rows=rows, match=match, name=name, segment_id=segment_id,
                           count=count, errors=errors or {}), status


@activity_blueprint.route("/segment/build", methods=["GET"])
def segment_build():
    actor, services = require_actor(), current_app.extensions["crmkit"]
    segment_id = request.args.get("segment", type=int)
    name = request.args.get("name", "")[:100]
    if segment_id and not request.args.getlist("ff"):
        seg = services.queries.get(segments.SEGMENT, segment_id, actor)
        conditions, match = conditions_of(segments.parse_filter(seg["filter"]))
        name = seg["name"]
    else:
        match = "any" if request.args.get("match") == "any" else "all"
        try:
            conditions = conditions_from_args(request.args)
        except BadQuery as exc:
            return _page(conditions=[], match=match, name=name, segment_id=segment_id, errors={"_form": [exc.message]}, status=422)
    count = None
    errors = {}
    if conditions:
        try:
            tree = conditions_tree(conditions, match)
            count = services.queries.list(segments.MEMBER, actor, filter=tree, fields=["id"], limit=1, labels=False, count="exact").total
        except BadQuery as exc:
            errors["_form"] = [exc.message]
    return _page(conditions=conditions, match=match, name=name, segment_id=segment_id, count=count, errors=errors, status=422 if errors else 200)


@activity_blueprint.route("/segment/build", methods=["POST"])
def segment_save():
    actor, services = require_actor(), current_app.extensions["crmkit"]
    form = request.form
    match = "any" if form.get("match") == "any" else "all"
    segment_id = form.get("segment", type=int)
    name = (form.get("name") or "").strip()
    conditions: list[Condition] = []
    try:
        conditions = conditions_from_args(form)
        tree = conditions_tree(conditions, match)
        if tree is None:
            raise ValidationFailed({"filter": [text("Add at least one condition.", "请至少添加一个条件。")]})
        data = {"filter": json.dumps(tree, ensure_ascii=False)}
        if segment_id:
            from ..assign import set_fields

            set_fields(services, segments.SEGMENT, segment_id, actor, data={**data, **({"name": name} if name else {})})
        else:
            segment_id = services.records.create(segments.SEGMENT, {**data, "name": name}, actor)
    except ValidationFailed as exc:
        return _page(conditions=conditions, match=match, name=name, segment_id=segment_id, errors=exc.field_errors, status=422)
    except CrmkitError as exc:
        if exc.status == 403:
            raise
        return _page(conditions=conditions, match=match, name=name, segment_id=segment_id, errors={"_form": [exc.message]}, status=422)
    return redirect(url_for("crmkit_web.entity_detail", entity_key=segments.SEGMENT, record_id=segment_id))
