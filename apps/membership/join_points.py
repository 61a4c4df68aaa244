"""Joining points: an approved online application earns the active plan's ``online_join`` point items.

Posted through the ledger in the approval's transaction with the idempotency key ``join:<application id>``,
so a replayed approval posts nothing twice."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection

from .earning import BUSINESS_TZ, expires_at, load_plan
from .ledger import LedgerService

JOIN_KINDS = ("online_join",)


def award_join_points(conn: Connection, tables: dict, member_id: int, application_id: int, actor) -> int:
    """Points posted (0 when no active plan has a joining item)."""
    now = dt.datetime.now(dt.timezone.utc)
    plan = load_plan(conn, tables, now.astimezone(BUSINESS_TZ).date())
    if plan is None:
        return 0
    items = {r.id: r.fixed_points for r in plan.items if r.kind in JOIN_KINDS and r.fixed_points > 0}
    points = sum(items.values())
    if points <= 0:
        return 0
    LedgerService(conn.engine).earn(member_id, points, key=f"join:{application_id}", actor=actor, source_type="application",
                                    source_id=application_id, expires_at=expires_at(plan, now), conn=conn, memo="online join",
                                    details={"items": {str(k): v for k, v in items.items()}, "plan": plan.id})
    return points
