"""Workflow actions of the membership template, registered on its typed ``AppHooks`` in ``__init__``."""
from __future__ import annotations

import datetime as dt

from crmkit.runtime.workflow import ActionContext

CHANNELS = {"front_desk": "store", "online": "online", "purchase": "purchase"}


def create_member(ctx: ActionContext) -> None:
    """An approved join application becomes a member. The record service assigns the card number from the
    member's sequence field, inside the transition's transaction, so a refused write gives the number back."""
    a = ctx.record
    data = {"name": a["name"], "mobile": a["mobile"], "joined_on": dt.date.today().isoformat(),
            "join_channel": CHANNELS.get(a.get("source") or "", "store")}
    if a.get("id_number"):
        data["id_number"] = a["id_number"]
    if a.get("birthday"):
        data["birthday"] = a["birthday"].isoformat()
    if a.get("notes"):
        data["notes"] = a["notes"]
    ctx.records.create_within(ctx.conn, "membership.member", data, ctx.as_system(), request_id=ctx.request_id)
