"""Carry-over (结转) at the end of a points plan, and its reversal (反结转), for many members at once.

Points that would expire with the plan (open reward lots expiring by the plan's end) are carried into the next
period when the plan's carry-over rule allows: ``all`` carries every member's, ``min_balance`` only members
holding at least ``carry_over_min`` of them, ``none`` carries nothing (they expire with ``expire_due``). Carried
points get one new lot expiring at the end of the next plan (or 12 months after this plan's end when there is
none). Each member's carry-over is one ledger entry keyed ``carry:<plan>:<member>``, so a re-run carries nothing twice
(and a reversed carry-over is not carried again by a later run).
"""
from __future__ import annotations

import datetime as dt

from dateutil.relativedelta import relativedelta
from sqlalchemy import select

from crmkit.runtime.actor import Actor

from .earning import BUSINESS_TZ
from .ledger import LedgerRefused, LedgerService
from .ledger import tables as lt
from .redemption import entity_tables


def plan_end_instant(ends_on: dt.date) -> dt.datetime:
    return dt.datetime.combine(ends_on + dt.timedelta(days=1), dt.time(), BUSINESS_TZ).astimezone(dt.timezone.utc)


def carry_over(services, plan_id: int, *, actor: Actor) -> dict:
    """Carry over every eligible member's points for ``plan_id``; returns {"members": n, "points": total}."""
    plans = entity_tables(services)["membership.points_plan"]
    ledger = LedgerService(services.engine)
    with services.engine.connect() as c:
        plan = c.execute(select(plans).where(plans.c.id == plan_id, plans.c.deleted_at.is_(None))).mappings().first()
        if plan is None:
            raise LedgerRefused(f"Points plan #{plan_id} does not exist.")
        rule = plan["carry_over_rule"] or "none"
        if rule == "none":
            return {"members": 0, "points": 0}
        end = plan_end_instant(plan["ends_on"])
        following = c.execute(select(plans.c.ends_on).where(plans.c.deleted_at.is_(None), plans.c.starts_on > plan["ends_on"])
                              .order_by(plans.c.starts_on, plans.c.id).limit(1)).scalar()
        new_expiry = plan_end_instant(following) if following else end + relativedelta(months=12)
        minimum = int(plan["carry_over_min"] or 0) if rule == "min_balance" else 0
        rows = c.execute(select(lt.account.c.member_id, lt.lot.c.id, lt.lot.c.remaining)
                         .select_from(lt.lot.join(lt.account, lt.account.c.id == lt.lot.c.account_id))
                         .where(lt.account.c.kind == "wallet", lt.account.c.currency == "reward", lt.lot.c.remaining > 0,
                                lt.lot.c.expires_at.is_not(None), lt.lot.c.expires_at <= end)
                         .order_by(lt.account.c.member_id, lt.lot.c.id)).all()
    per_member: dict[int, list] = {}
    for r in rows:
        per_member.setdefault(r.member_id, []).append(r)
    members = points = 0
    for member_id, lots in per_member.items():
        if sum(int(x.remaining) for x in lots) < max(minimum, 1):
            continue
        posted = ledger.carry(member_id, [x.id for x in lots], new_expiry, key=f"carry:{plan_id}:{member_id}", actor=actor, plan_id=plan_id)
        if posted.created:
            members += 1
            points += sum(int(x.remaining) for x in lots)
    return {"members": members, "points": points}


def reverse_carry_over(services, plan_id: int, *, actor: Actor) -> dict:
    """反结转: undo every member's carry-over for ``plan_id`` (what is left of each carried lot gets its old expiry back)."""
    ledger = LedgerService(services.engine)
    with services.engine.connect() as c:
        carried = c.execute(select(lt.entry.c.id).where(lt.entry.c.kind == "carry", lt.entry.c.source_type == "plan",
                                                        lt.entry.c.source_id == str(plan_id)).order_by(lt.entry.c.id)).scalars().all()
    n = 0
    for entry_id in carried:
        try:
            if ledger.uncarry(entry_id, key=f"uncarry:{entry_id}", actor=actor).created:
                n += 1
        except LedgerRefused:
            continue  # already reversed
    return {"members": n}
