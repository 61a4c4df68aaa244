"""Offer rules (pure) and redeeming an offer at a merchant's counter (one transaction).

Rules checked before anything is written: the merchant is in formal cooperation and its contract covers today;
the offer belongs to the merchant, is active and valid today; today is not a blackout date; the member's card is
active and the member's level is one the offer applies to.

Limits are enforced while rows are locked, so concurrent counter clerks cannot overshoot them:
- a points offer goes through ``LedgerService.redeem`` (the member's wallet row is locked first, as in every
  points posting), and the rest runs in its ``within`` callback;
- the total limit is a guarded counter update through ``RecordService.adjust_within`` (``used_count + 1 <=
  total_limit`` in the ``UPDATE`` itself), which also locks the offer row until commit;
- the per-member limit is counted after that, with the offer row locked, so two uses of one offer by one member
  are counted one after the other.
Lock order: wallet (points offers only) → offer → the new redemption record. A reversal locks the redemption
record, then the wallet, then the offer; nothing locks an offer before a wallet, so the two cannot deadlock.
"""
from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from crmkit.apps.membership.earning import BUSINESS_TZ
from crmkit.apps.membership.ledger import LedgerService
from crmkit.runtime.actor import Actor
from crmkit.runtime.db import write_transaction
from crmkit.runtime.i18n_text import text

from .errors import OfferRefused

D = decimal.Decimal
OFFER, MERCHANT, REDEMPTION, MEMBER = "alliance.offer", "alliance.merchant", "alliance.redemption", "membership.member"
SOURCE = "alliance.merchant"  # ledger source_type: the entry's source_id is the merchant id (per-merchant attribution)


@dataclass(frozen=True)
class Redeemed:
    redemption_id: int
    entry_id: int | None
    points: int
    benefit: D
    created: bool  # False: the key was used before and nothing new was written


def entity_tables(services) -> dict:
    return services.records.table_cache.tables(services.store.catalog())


def business_day(now: dt.datetime) -> dt.date:
    return now.astimezone(BUSINESS_TZ).date()


# --- pure rules -------------------------------------------------------------------------------------------
def check_merchant(merchant: dict, day: dt.date) -> None:
    if merchant.get("workflow_state") != "formal":
        raise OfferRefused(text("{name} is not in formal cooperation; its offers cannot be used.", "{name}不在正式合作状态，优惠不可使用。",
                                name=merchant["name"]))
    start, end = merchant.get("contract_start"), merchant.get("contract_end")
    if (start and day < start) or (end and day > end):
        raise OfferRefused(text("The contract with {name} does not cover today.", "与{name}的合同不在有效期内。", name=merchant["name"]))


def check_offer(offer: dict, *, level_ids: set[int], blackouts: list[tuple[dt.date, dt.date]], member_level: int | None, day: dt.date) -> None:
    """Raise OfferRefused when the offer cannot be used on ``day`` by a member of ``member_level``."""
    name = offer["name"]
    if not offer.get("active"):
        raise OfferRefused(text("{name} is not active.", "{name}未启用。", name=name))
    if (offer.get("valid_from") and day < offer["valid_from"]) or (offer.get("valid_until") and day > offer["valid_until"]):
        raise OfferRefused(text("{name} is not valid today.", "{name}不在有效期内。", name=name))
    for start, end in blackouts:
        if start <= day <= end:
            raise OfferRefused(text("{name} cannot be used today (blackout {start} – {end}).", "{name}今日不可用（不可用日期 {start} 至 {end}）。",
                                    name=name, start=start.isoformat(), end=end.isoformat()))
    if level_ids and member_level not in level_ids:
        raise OfferRefused(text("{name} is not available at this member's level.", "该会员等级不适用{name}。", name=name))


def benefit_amount(offer: dict, bill: D | None) -> D:
    """What the member saves: a share of the bill for a discount, the fixed amount otherwise (never more than the bill)."""
    kind = offer.get("kind")
    if kind == "discount":
        if bill is None:
            raise OfferRefused(text("Enter the bill amount for a discount offer.", "折扣优惠需要输入消费金额。"))
        return (bill * D(str(offer.get("discount_rate") or 0)) / 100).quantize(D("0.01"), rounding=decimal.ROUND_HALF_UP)
    amount = D(str(offer.get("amount_off") or 0))
    return min(amount, bill) if bill is not None and kind == "amount" else amount


# --- the counter ------------------------------------------------------------------------------------------
def redeem_offer(services, *, merchant_id: int, offer_id: int, member_id: int, actor: Actor, key: str, bill: D | None = None,
                 now: dt.datetime | None = None, ledger: LedgerService | None = None) -> Redeemed:
    """Use an offer for a member at a merchant; ``key`` (the counter's request id) makes a resubmission write nothing."""
    if not key or len(key) > 60:
        raise ValueError("a redemption key is 1-60 characters")
    ref = f"R-{key}"
    now = now or dt.datetime.now(dt.timezone.utc)
    day = business_day(now)
    ledger = ledger or LedgerService(services.engine)
    tables = entity_tables(services)
    offers, redemptions = tables[OFFER], tables[REDEMPTION]
    if bill is not None and bill < 0:
        raise OfferRefused(text("The bill amount cannot be negative.", "消费金额不能为负数。"))
    try:
        with write_transaction(services.engine) as c:
            found = _existing(c, redemptions, ref)
            if found:
                return found
            merchant = _row(c, tables[MERCHANT], merchant_id, text("Merchant #{id} does not exist.", "商家 #{id} 不存在。", id=merchant_id))
            offer = _row(c, offers, offer_id, text("Offer #{id} does not exist.", "优惠 #{id} 不存在。", id=offer_id))
            if offer["merchant"] != merchant_id:
                raise OfferRefused(text("This offer belongs to another merchant.", "该优惠不属于本商家。"))
            member = _row(c, tables[MEMBER], member_id, text("Member #{id} does not exist.", "会员 #{id} 不存在。", id=member_id))
            if member["status"] not in (None, "active"):
                raise OfferRefused(text("Only members with an active card can use offers.", "只有卡状态正常的会员才能使用优惠。"))
            check_merchant(merchant, day)
            lv, bo = tables["alliance.offer_level"], tables["alliance.offer_blackout"]
            levels = {r.level for r in c.execute(select(lv.c.level).where(lv.c.parent_id == offer_id))}
            blackouts = [(r.starts_on, r.ends_on) for r in c.execute(select(bo.c.starts_on, bo.c.ends_on).where(bo.c.parent_id == offer_id))]
            check_offer(offer, level_ids=levels, blackouts=blackouts, member_level=member["level"], day=day)
            benefit = benefit_amount(offer, bill)
            points = int(offer["points_cost"] or 0) if offer["kind"] == "points" else 0
            if offer["kind"] == "points" and points <= 0:
                raise OfferRefused(text("This offer has no points price.", "该优惠未设置所需积分。"))
            made: dict[str, Any] = {}

            def take(conn: Connection, entry_id: int | None) -> None:
                made["id"] = _take_use(services, conn, tables, offer, member_id, actor, now, {
                    "ref": ref, "merchant": merchant_id, "offer": offer_id, "member": member_id, "redeemed_at": now.isoformat(),
                    "bill_amount": None if bill is None else str(bill), "benefit_amount": str(benefit), "points": points,
                    "funded_by": offer["funded_by"], "entry_id": entry_id, "status": "done"})

            if points:
                posted = ledger.redeem(member_id, points, key=f"alliance:redeem:{key}", actor=actor, source_type=SOURCE, source_id=merchant_id,
                                       memo=offer["name"][:200], conn=c, within=take, counter="merchant",
                                       details={"merchant": merchant_id, "offer": offer_id, "ref": ref})
                if not posted.created:  # the ledger saw this key before: the redemption row came with it
                    return _existing(c, redemptions, ref)
                return Redeemed(made["id"], posted.entry_id, points, benefit, True)
            take(c, None)
            return Redeemed(made["id"], None, 0, benefit, True)
    except IntegrityError:
        # The same key was submitted twice at once: the loser reports the winner's redemption.
        with services.engine.connect() as c:
            found = _existing(c, redemptions, ref)
        if found:
            return found
        raise


def _take_use(services, conn: Connection, tables: dict, offer: dict, member_id: int, actor: Actor, now: dt.datetime, data: dict) -> int:
    redemptions = tables[REDEMPTION]
    oid = offer["id"]
    if services.records.adjust_within(conn, OFFER, oid, "used_count", 1, actor, at_most_field="total_limit") is None:
        raise OfferRefused(text("{name} has been used up ({limit} uses in total).", "{name}已达总使用次数上限（{limit} 次）。",
                                name=offer["name"], limit=offer["total_limit"]))
    limit = offer["per_member_limit"]
    if limit is not None:
        had = conn.execute(select(func.count()).select_from(redemptions).where(
            redemptions.c.offer == oid, redemptions.c.member == member_id, redemptions.c.status == "done",
            redemptions.c.deleted_at.is_(None))).scalar_one()
        if had >= limit:
            raise OfferRefused(text("{name} is limited to {limit} uses per member; this member has used it {had} times.",
                                    "{name}每人限用 {limit} 次，该会员已使用 {had} 次。", name=offer["name"], limit=limit, had=had))
    return services.records.create_within(conn, REDEMPTION, data, actor)


def reverse_redemption(services, redemption_id: int, *, actor: Actor, reason: str, ledger: LedgerService | None = None) -> int:
    """Undo a redemption: the points come back (a compensating ledger entry), the offer use is released, and the
    record is marked reversed — one transaction. Returns the compensating entry id (None for a points-free offer)."""
    if not (reason or "").strip():
        raise OfferRefused(text("Give a reason for the reversal.", "请填写撤销原因。"))
    from .staff import MANAGER_ROLE, as_app, require_role

    require_role(services, actor, MANAGER_ROLE)
    ledger = ledger or LedgerService(services.engine)
    current = services.queries.get(REDEMPTION, redemption_id, actor)  # the manager must be able to see it
    if current.get("status") != "done":
        raise OfferRefused(text("This redemption was already reversed.", "该核销已撤销。"))
    out: dict[str, Any] = {"entry": None}

    def within(conn: Connection) -> None:
        if current.get("entry_id"):
            out["entry"] = ledger.reverse(int(current["entry_id"]), key=f"alliance:reverse:{redemption_id}", actor=actor, memo=reason[:200],
                                          conn=conn).entry_id
        services.records.adjust_within(conn, OFFER, current["offer"], "used_count", -1, actor, at_least=0,
                                       note={"reversed_redemption": redemption_id, "reason": reason[:200]})

    # redemption records are written by the app only (no role holds update on them): the app's rights, the user's id
    services.records.update(REDEMPTION, redemption_id, {"status": "reversed"}, as_app(actor), expected_version=current["row_version"], within=within)
    return out["entry"]


def _row(c: Connection, table, rid: int, missing: str) -> dict:
    row = c.execute(select(table).where(table.c.id == rid, table.c.deleted_at.is_(None))).mappings().first()
    if row is None:
        raise OfferRefused(missing)
    return dict(row)


def _existing(c: Connection, redemptions, ref: str) -> Redeemed | None:
    r = c.execute(select(redemptions).where(redemptions.c.ref == ref)).mappings().first()
    if r is None:
        return None
    return Redeemed(r["id"], r["entry_id"], int(r["points"] or 0), D(str(r["benefit_amount"] or 0)), False)
