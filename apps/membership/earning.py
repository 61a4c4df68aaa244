"""Earning rules: how many points an order earns under the active points plan (pure functions), and the order
listener that posts them.

The listener runs inside the record service's write transaction for the order (``AppHooks.on_record_written``),
so the order row and its points commit or roll back together: points cannot be lost between the two, and the
idempotency key ``order:<id>:<currency>`` makes a replay post nothing.

Rule for one point item: ``rounding(amount × per_yuan × level multiplier × bonus-period multiplier) + fixed_points``,
then capped per order and by what is left of the item's daily cap for the member.
"""
from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Table, select

from .ledger import LedgerService
from .ledger import tables as lt

D = decimal.Decimal
# Business days (daily caps, bonus periods) are counted in China Standard Time.
BUSINESS_TZ = ZoneInfo("Asia/Shanghai")
ROUNDING = {"floor": decimal.ROUND_FLOOR, "round": decimal.ROUND_HALF_UP, "ceil": decimal.ROUND_CEILING}


@dataclass(frozen=True)
class ItemRule:
    id: int
    kind: str
    per_yuan: D = D(0)
    fixed_points: int = 0
    rounding: str = "floor"
    multipliers: dict[int, D] = field(default_factory=dict)  # level id → multiplier
    periods: tuple[tuple[dt.date, dt.date, D], ...] = ()
    cap_per_order: int | None = None
    cap_per_day: int | None = None


@dataclass(frozen=True)
class PlanRules:
    id: int
    starts_on: dt.date
    ends_on: dt.date
    items: tuple[ItemRule, ...]
    expiry_rule: str = "never"
    expiry_months: int = 12
    upgrade_per_yuan: D = D(0)


def item_points(rule: ItemRule, amount: D, *, level_id: int | None, day: dt.date, earned_today: int = 0) -> int:
    base = D(amount) * rule.per_yuan * rule.multipliers.get(level_id, D(1))
    bonus = max((m for start, end, m in rule.periods if start <= day <= end), default=D(1))
    pts = int((base * bonus).to_integral_value(rounding=ROUNDING.get(rule.rounding, decimal.ROUND_FLOOR))) + rule.fixed_points
    if rule.cap_per_order is not None:
        pts = min(pts, rule.cap_per_order)
    if rule.cap_per_day is not None:
        pts = min(pts, max(rule.cap_per_day - earned_today, 0))
    return max(pts, 0)


def order_points(plan: PlanRules, order_kind: str, amount: D, *, level_id: int | None, day: dt.date,
                 earned_today: dict[int, int] | None = None) -> dict[int, int]:
    """Points per point item (id → points) for an order of ``order_kind`` (consumption or purchase)."""
    earned_today = earned_today or {}
    return {r.id: item_points(r, amount, level_id=level_id, day=day, earned_today=earned_today.get(r.id, 0))
            for r in plan.items if r.kind == order_kind}


def expires_at(plan: PlanRules, earned: dt.datetime) -> dt.datetime | None:
    if plan.expiry_rule == "months_after_earn":
        from dateutil.relativedelta import relativedelta

        return earned + relativedelta(months=plan.expiry_months or 12)
    if plan.expiry_rule == "plan_end":
        return dt.datetime.combine(plan.ends_on + dt.timedelta(days=1), dt.time(), BUSINESS_TZ).astimezone(dt.timezone.utc)
    return None


def load_plan(conn: Connection, tables: dict[str, Table], day: dt.date) -> PlanRules | None:
    """The active plan covering ``day`` (the latest-starting one if several overlap), with its active items."""
    p, i = tables["membership.points_plan"], tables["membership.point_item"]
    row = conn.execute(select(p).where(p.c.deleted_at.is_(None), p.c.active.is_(True), p.c.starts_on <= day, p.c.ends_on >= day)
                       .order_by(p.c.starts_on.desc(), p.c.id.desc()).limit(1)).mappings().first()
    if row is None:
        return None
    items = []
    lv, per = tables["membership.point_item_level"], tables["membership.point_item_period"]
    for it in conn.execute(select(i).where(i.c.plan == row["id"], i.c.deleted_at.is_(None), i.c.active.is_not(False)).order_by(i.c.id)).mappings():
        mult = {r.level: D(str(r.multiplier)) for r in conn.execute(select(lv.c.level, lv.c.multiplier).where(lv.c.parent_id == it["id"]))}
        periods = tuple((r.starts_on, r.ends_on, D(str(r.multiplier)))
                        for r in conn.execute(select(per.c.starts_on, per.c.ends_on, per.c.multiplier).where(per.c.parent_id == it["id"])))
        items.append(ItemRule(id=it["id"], kind=it["kind"], per_yuan=D(str(it["per_yuan"] or 0)), fixed_points=int(it["fixed_points"] or 0),
                              rounding=it["rounding"] or "floor", multipliers=mult, periods=periods, cap_per_order=it["cap_per_order"],
                              cap_per_day=it["cap_per_day"]))
    return PlanRules(id=row["id"], starts_on=row["starts_on"], ends_on=row["ends_on"], items=tuple(items), expiry_rule=row["expiry_rule"] or "never",
                     expiry_months=int(row["expiry_months"] or 12), upgrade_per_yuan=D(str(row["upgrade_per_yuan"] or 0)))


def _earned_today(conn: Connection, member_id: int, day: dt.date) -> dict[int, int]:
    start = dt.datetime.combine(day, dt.time(), BUSINESS_TZ).astimezone(dt.timezone.utc)
    out: dict[int, int] = {}
    # An entry for an order of ``day`` cannot have been posted before that day began; the order's day is in its details.
    q = select(lt.entry.c.details).where(lt.entry.c.member_id == member_id, lt.entry.c.source_type == "order", lt.entry.c.currency == "reward",
                                         lt.entry.c.kind.in_(("earn", "earn_pending")), lt.entry.c.created_at >= start)
    for r in conn.execute(q):
        if (r.details or {}).get("day") != day.isoformat():
            continue
        for item, pts in ((r.details or {}).get("items") or {}).items():
            out[int(item)] = out.get(int(item), 0) + int(pts)
    return out


def on_order_written(conn: Connection, written) -> None:
    """Post, confirm or reverse an order's points so that the ledger matches the order's payment state."""
    if written.verb not in ("created", "updated"):
        return
    order = conn.execute(select(written.table).where(written.table.c.id == written.record_id)).mappings().one()
    sync_order_points(conn, written.tables, order, written.actor)


def sync_order_points(conn: Connection, tables: dict[str, Table], order, actor) -> None:
    ledger = LedgerService(conn.engine)
    oid, member_id = order["id"], order["member"]
    amount = D(str(order["amount"] or 0))
    status = order["payment_status"]
    at = order["ordered_at"] or order["created_at"]
    at = at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)
    for currency in ("reward", "upgrade"):
        key = f"order:{oid}:{currency}"
        entry = conn.execute(select(lt.entry).where(lt.entry.c.idempotency_key == key)).mappings().first()
        if entry is None and status in ("pending", "paid") and amount > 0:
            day = at.astimezone(BUSINESS_TZ).date()
            plan = load_plan(conn, tables, day)
            if plan is None:
                return
            m = tables["membership.member"]
            level = conn.execute(select(m.c.level).where(m.c.id == member_id)).scalar()
            if currency == "reward":
                items = order_points(plan, order["kind"] or "consumption", amount, level_id=level, day=day,
                                     earned_today=_earned_today(conn, member_id, day))
                points = sum(items.values())
            else:
                items, points = {}, int((amount * plan.upgrade_per_yuan).to_integral_value(rounding=decimal.ROUND_FLOOR))
            if points <= 0:
                continue
            ledger.earn(member_id, points, key=key, actor=actor, currency=currency, source_type="order", source_id=oid, pending=status == "pending",
                        expires_at=expires_at(plan, at) if currency == "reward" else None, conn=conn, memo=order.get("order_no"),
                        details={"items": {str(k): v for k, v in items.items()}, "plan": plan.id, "day": day.isoformat()})
            entry = conn.execute(select(lt.entry).where(lt.entry.c.idempotency_key == key)).mappings().first()
        if entry is None:
            continue
        if status == "paid" and entry["kind"] == "earn_pending":
            ledger.confirm(entry["id"], actor=actor, conn=conn)
        refunded = D(str(order["refunded_amount"] or 0))
        points = int((entry["details"] or {}).get("points") or entry["amount"])
        if status == "cancelled":
            target = points
        elif refunded > 0 and amount > 0:
            target = int((D(points) * min(refunded, amount) / amount).to_integral_value(rounding=decimal.ROUND_FLOOR))
        else:
            target = 0
        done = ledger.reversed_points(conn, entry["id"])
        if target > done:
            ledger.reverse(entry["id"], key=f"{key}:refund:{target}", actor=actor, points=target - done, conn=conn,
                           memo=f"refund {refunded}" if status != "cancelled" else "cancelled")
