"""Saved member segments (会员分群): a name and a filter tree in the query service's filter language.

The filter is the same JSON the member list's filter builder produces (``{"and": [{"field": "level", "op": "eq",
"value": 2}, {"field": "address", "op": "contains", "value": "上海"}, {"field": "birthday_this_month", "op": "eq",
"value": true}]}``). It is checked when the segment is saved (a validator compiles it against the member table,
computed fields included), and every read of a segment's members goes through the query service as the viewer,
so their row scope (a store manager's store) applies: two users may see different counts for one segment.
"""
from __future__ import annotations

import datetime as dt
import json

from crmkit.runtime.actor import Actor
from crmkit.runtime.errors import BadQuery, ValidationFailed
from crmkit.runtime.fields import FilterContext
from crmkit.runtime.i18n_text import text
from crmkit.runtime.query.computed import computed_view
from crmkit.runtime.query.filters import compile_filter
from crmkit.runtime.records.hooks import RecordWrite

from .assign import set_fields

SEGMENT = "membership.segment"
MEMBER = "membership.member"
PAGE = 200


def parse_filter(raw) -> dict:
    """The stored filter text as a tree; a bilingual field error when it is not a JSON object."""
    if isinstance(raw, dict):
        return raw
    try:
        tree = json.loads(raw or "")
    except (TypeError, ValueError):
        tree = None
    if not isinstance(tree, dict):
        raise ValidationFailed({"filter": [text("The filter must be a JSON filter tree, e.g. {\"and\": [...]}.",
                                                "筛选条件须为 JSON 筛选树，如 {\"and\": [...]}。")]})
    return tree


def check_segment(write: RecordWrite):
    """Validator: the filter parses and compiles against the member entity (unknown fields, bad operators or values
    are refused with the query service's own message, and nothing is stored)."""
    if "filter" not in write.values:
        return None
    try:
        tree = parse_filter(write.values["filter"])
    except ValidationFailed as exc:
        return exc.field_errors
    member = write.catalog.entity(MEMBER)
    view = computed_view(write.catalog, member, write.tables, "Asia/Shanghai")
    names = tuple(f.name for f in member.fields if write.catalog.type_of(f).stored or write.catalog.type_of(f).computed)
    try:
        compile_filter(write.catalog, member, view.table, tree, FilterContext(write.conn.dialect.name, "Asia/Shanghai",
                                                                              dt.datetime.now(dt.timezone.utc)), view.comparable(names))
    except BadQuery as exc:
        return {"filter": [exc.message]}
    write.values["filter"] = json.dumps(tree, ensure_ascii=False, sort_keys=True)
    return None


def segment_filter(services, segment_id: int, actor: Actor) -> dict:
    """The segment's filter tree (the actor must be able to read the segment)."""
    return parse_filter(services.queries.get(SEGMENT, segment_id, actor)["filter"])


def count(services, segment_id: int, actor: Actor) -> int:
    """How many members of the segment ``actor`` sees (exact, under their row scope)."""
    page = services.queries.list(MEMBER, actor, filter=segment_filter(services, segment_id, actor), fields=["id"], limit=1, labels=False,
                                 count="exact")
    return int(page.total or 0)


def preview(services, segment_id: int, actor: Actor, *, limit: int = 20) -> dict:
    """The member count and the first members, and the count kept on the segment (``member_count``, ``counted_at``)."""
    seg = services.queries.get(SEGMENT, segment_id, actor)
    page = services.queries.list(MEMBER, actor, filter=parse_filter(seg["filter"]), fields=["name", "card_no", "level"], sort=["id"],
                                 limit=limit, count="exact")
    total = int(page.total or 0)
    if services.policy.allows(actor, services.store.catalog().entity(SEGMENT), "update"):
        set_fields(services, SEGMENT, segment_id, actor, assigned={"member_count": total, "counted_at": dt.datetime.now(dt.timezone.utc)})
    return {"count": total, "members": page.rows}


def members(services, segment_id: int, actor: Actor, *, cursor: str | None = None, limit: int = 50):
    """One page of the segment's members through the query service (keyset cursor, as the member list)."""
    return services.queries.list(MEMBER, actor, filter=segment_filter(services, segment_id, actor), sort=["id"], cursor=cursor,
                                 limit=limit, count="exact")


def member_ids(services, segment_id: int, actor: Actor) -> list[int]:
    """Every member id of the segment as ``actor`` sees it."""
    from .coupons import member_ids as ids_for

    return ids_for(services, actor, segment_filter(services, segment_id, actor))
