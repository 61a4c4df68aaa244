"""Ledger figures stored on metadata records, so the report engine (which reads entities only) can show them:
per points plan — reward points issued, redeemed and expired in the plan's period, the points still outstanding
from it and their liability (× the plan's point value); per catalogue reward — units, points and members redeemed.

An entry belongs to the plan named in its details (order earnings carry it), otherwise to the plan whose dates
contain the entry's business day. issued = earned (pending included) + positive adjustments − refund/cancel
reversals of earnings; redeemed = redemptions − their reversals; expired = expiry postings. Negative manual
adjustments are in none of the three. Outstanding = the open remainder of the plan's earn lots.
"""
from __future__ import annotations

import datetime as dt
import decimal
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import aliased

from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.db import write_transaction

from .earning import BUSINESS_TZ
from .ledger import tables as lt

PLAN, REWARD = "membership.points_plan", "membership.reward_item"
PLAN_FIELDS = ("points_issued", "points_redeemed", "points_expired", "points_outstanding", "liability")
REWARD_FIELDS = ("redeemed_quantity", "redeemed_points", "redeemers")
EARN_KINDS = ("earn", "earn_pending")


def _day(at: dt.datetime) -> dt.date:
    return (at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)).astimezone(BUSINESS_TZ).date()


def plan_of(details, created_at, plans: list) -> int | None:
    named = (details or {}).get("plan")
    if named is not None:
        return int(named)
    day = _day(created_at)
    return next((p.id for p in plans if p.starts_on <= day <= p.ends_on), None)


def plan_figures(conn, tables: dict) -> dict[int, dict]:
    """Plan id → the five figures (see module docstring)."""
    p = tables[PLAN]
    plans = conn.execute(select(p.c.id, p.c.starts_on, p.c.ends_on, p.c.point_value).where(p.c.deleted_at.is_(None)).order_by(p.c.starts_on, p.c.id)).all()
    out = {pl.id: dict.fromkeys(PLAN_FIELDS[:4], 0) for pl in plans}
    e, orig = lt.entry, aliased(lt.entry)
    q = (select(e.c.kind, e.c.amount, e.c.details, e.c.created_at, orig.c.kind.label("orig_kind"), orig.c.details.label("orig_details"),
                orig.c.created_at.label("orig_at"))
         .outerjoin(orig, orig.c.id == e.c.reversal_of).where(e.c.currency == "reward"))
    for r in conn.execute(q):
        if r.kind == "reverse" and r.orig_kind in EARN_KINDS:
            pid, field = plan_of(r.orig_details, r.orig_at, plans), "points_issued"  # a refund takes back what that plan issued
        elif r.kind == "reverse" and r.orig_kind == "redeem":
            pid, field = plan_of(r.details, r.created_at, plans), "points_redeemed"
        elif r.kind in EARN_KINDS or (r.kind == "adjust" and r.amount > 0):
            pid, field = plan_of(r.details, r.created_at, plans), "points_issued"
        elif r.kind in ("redeem", "expire"):
            pid, field = plan_of(r.details, r.created_at, plans), "points_redeemed" if r.kind == "redeem" else "points_expired"
        else:
            continue
        if pid in out:
            out[pid][field] += r.amount if field == "points_issued" else -r.amount
    lots = select(lt.lot.c.remaining, e.c.details, e.c.created_at).join(e, e.c.id == lt.lot.c.entry_id).join(
        lt.account, lt.account.c.id == lt.lot.c.account_id).where(lt.lot.c.remaining > 0, lt.account.c.currency == "reward",
                                                                 lt.account.c.kind == "wallet")
    for r in conn.execute(lots):
        pid = plan_of(r.details, r.created_at, plans)
        if pid in out:
            out[pid]["points_outstanding"] += int(r.remaining)
    for pl in plans:
        value = decimal.Decimal(str(pl.point_value or 0))
        out[pl.id]["liability"] = (value * out[pl.id]["points_outstanding"]).quantize(decimal.Decimal("0.01"))
    return out


def reward_figures(conn) -> dict[int, dict]:
    qty, pts, who = defaultdict(int), defaultdict(int), defaultdict(set)
    for r in conn.execute(select(lt.redemption.c.item_id, lt.redemption.c.member_id, lt.redemption.c.quantity, lt.redemption.c.points)):
        qty[r.item_id] += int(r.quantity)
        pts[r.item_id] += int(r.points)
        who[r.item_id].add(r.member_id)
    return {i: {"redeemed_quantity": qty[i], "redeemed_points": pts[i], "redeemers": len(who[i])} for i in qty}


def _differs(new, old) -> bool:
    if isinstance(new, decimal.Decimal):
        return old is None or decimal.Decimal(str(old)) != new
    return new != old


def _write(services, entity: str, table, rid: int, new: dict, actor: Actor) -> bool:
    with write_transaction(services.engine) as conn:
        row = conn.execute(select(table).where(table.c.id == rid)).mappings().one()
        changed = {k: v for k, v in new.items() if _differs(v, row[k])}
        if changed:
            services.records.update_within(conn, entity, rid, {}, Actor(id=actor.id, username=actor.username, is_admin=True), assigned=changed)
        return bool(changed)


def refresh(services, *, actor: Actor = SYSTEM) -> dict:
    """Recompute and store every plan's and reward's figures; writes only records whose figures moved."""
    tables = services.records.table_cache.tables(services.store.catalog())
    with services.engine.connect() as conn:
        plans, rewards = plan_figures(conn, tables), reward_figures(conn)
        reward_ids = conn.execute(select(tables[REWARD].c.id).where(tables[REWARD].c.deleted_at.is_(None))).scalars().all()
    zero = dict.fromkeys(REWARD_FIELDS, 0)
    changed = sum(_write(services, PLAN, tables[PLAN], pid, f, actor) for pid, f in plans.items())
    changed += sum(_write(services, REWARD, tables[REWARD], rid, rewards.get(rid, zero), actor) for rid in reward_ids)
    return {"plans": len(plans), "rewards": len(reward_ids), "changed": changed}
