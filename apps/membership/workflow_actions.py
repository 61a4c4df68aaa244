"""Workflow actions of the membership template, registered on its typed ``AppHooks`` in ``__init__``."""
from __future__ import annotations

import datetime as dt
from dataclasses import replace

from crmkit.runtime.workflow import ActionContext

from .card_actions import write_history
from .card_pool import bind, card_mode, draw
from .join_points import award_join_points

CHANNELS = {"front_desk": "store", "online": "online", "purchase": "purchase"}


def create_member(ctx: ActionContext) -> None:
    """An approved join application becomes a member, all in the transition's transaction (a refused write gives
    the card number back): it gets the entry level (lowest level value); the card number comes from the member's sequence field, or — in card pool mode — the
    next free pool card; the member belongs to the application's org unit (its store), gets an ``issued`` card
    history row and, for an online application, the plan's online-joining points (key ``join:<application id>``)."""
    a = ctx.record
    data = {"name": a["name"], "mobile": a["mobile"], "joined_on": dt.date.today().isoformat(),
            "join_channel": CHANNELS.get(a.get("source") or "", "store")}
    if a.get("id_number"):
        data["id_number"] = a["id_number"]
    if a.get("birthday"):
        data["birthday"] = a["birthday"].isoformat()
    if a.get("notes"):
        data["notes"] = a["notes"]
    tables = ctx.records.table_cache.tables(ctx.catalog)
    lv = tables["membership.level"]
    entry_level = ctx.conn.execute(lv.select().with_only_columns(lv.c.id).where(lv.c.deleted_at.is_(None))
                                   .order_by(lv.c.level_value, lv.c.id).limit(1)).scalar()
    if entry_level is not None:
        data["level"] = entry_level  # the entry level (lowest level value)
    system = ctx.as_system()
    if a.get("org_unit_id") is not None:
        system = replace(system, org_unit_id=a["org_unit_id"])
    assigned = {"card_no": draw(ctx.conn)} if card_mode(ctx.conn) == "pool" else None
    member_id = ctx.records.create_within(ctx.conn, "membership.member", data, system, request_id=ctx.request_id, assigned=assigned)
    m, app_table = tables["membership.member"], tables["membership.application"]
    card_no = ctx.conn.execute(m.select().with_only_columns(m.c.card_no).where(m.c.id == member_id)).scalar_one()
    if assigned:
        bind(ctx.conn, card_no, member_id)
    ctx.conn.execute(app_table.update().where(app_table.c.id == a["id"]).values(member=member_id))
    write_history(ctx.records, ctx.conn, system, member_id, "issued", card_no, None, None, "active",
                  f"入会申请 #{a['id']} / join application #{a['id']}", request_id=ctx.request_id)
    if a.get("source") == "online":
        award_join_points(ctx.conn, tables, member_id, a["id"], ctx.actor)
