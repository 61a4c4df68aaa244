"""Points for a member's purchase at a merchant: the membership plan's consumption rule, posted against the
merchant counter account (source ``alliance.merchant:<merchant id>``) in the purchase's own write transaction.

The purchase record's ``points`` field is read-only: this listener fills it in with what was posted, in the same
transaction that created the row. Cancelling a purchase reverses what is left of its entry.
"""
from __future__ import annotations

import datetime as dt
import decimal

from sqlalchemy import Connection, select

from crmkit.apps.membership.earning import BUSINESS_TZ, expires_at, load_plan, order_points
from crmkit.apps.membership.ledger import LedgerService
from crmkit.apps.membership.ledger import tables as lt

from .offers import SOURCE

D = decimal.Decimal


def purchase_key(purchase_id: int) -> str:
    return f"alliance:purchase:{purchase_id}"


def on_purchase_written(conn: Connection, written) -> None:
    if written.verb not in ("created", "updated"):
        return
    p = written.table
    row = conn.execute(select(p).where(p.c.id == written.record_id)).mappings().one()
    ledger = LedgerService(conn.engine)
    key = purchase_key(row["id"])
    entry = conn.execute(select(lt.entry).where(lt.entry.c.idempotency_key == key)).mappings().first()
    if entry is None and row["status"] == "done":
        at = row["purchased_at"] if row["purchased_at"].tzinfo else row["purchased_at"].replace(tzinfo=dt.timezone.utc)
        day = at.astimezone(BUSINESS_TZ).date()
        plan = load_plan(conn, written.tables, day)
        if plan is None:
            return
        m = written.tables["membership.member"]
        level = conn.execute(select(m.c.level).where(m.c.id == row["member"])).scalar()
        items = order_points(plan, "consumption", D(str(row["amount"])), level_id=level, day=day)
        points = sum(items.values())
        if points > 0:
            ledger.earn(row["member"], points, key=key, actor=written.actor, source_type=SOURCE, source_id=row["merchant"],
                        expires_at=expires_at(plan, at), conn=conn, memo=row["ref"], counter="merchant",
                        details={"merchant": row["merchant"], "purchase": row["id"], "items": {str(k): v for k, v in items.items()}, "plan": plan.id})
        conn.execute(p.update().where(p.c.id == row["id"]).values(points=points))
    elif entry is not None and row["status"] == "cancelled":
        left = abs(entry["amount"]) - ledger.reversed_points(conn, entry["id"])
        if left > 0:
            ledger.reverse(entry["id"], key=f"{key}:cancel", actor=written.actor, points=left, conn=conn, memo="cancelled")
