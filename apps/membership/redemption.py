"""Redeeming a catalogue reward: balance, stock, per-member limit and time window are checked in one transaction.

Order of locks (the same everywhere, so concurrent redemptions cannot deadlock): the member's wallet row first
(inside ``LedgerService.redeem``), then the reward's row through a conditional ``UPDATE … SET stock = stock - n
WHERE stock >= n``. The per-member limit is counted while the wallet row is locked, so two redemptions by the
same member cannot both pass it. Stock lives on the ``membership.reward_item`` record; counting it down goes through ``RecordService.adjust_within`` (a guarded counter update): the row version moves, so a form
opened before the redemption gets a stale-record error instead of overwriting the stock, and the audit entry and
``record.updated`` event are the record service's own.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, func, select

from crmkit.runtime.actor import Actor
from crmkit.runtime.audit import record_event
from crmkit.runtime.db import write_transaction
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.i18n_text import text

from .ledger import LedgerService, Posted, RedemptionRefused
from .ledger import tables as lt

ITEM = "membership.reward_item"


def entity_tables(services) -> dict:
    return services.records.table_cache.tables(services.store.catalog())


def redeem_reward(services, member_id: int, item_id: int, quantity: int, *, actor: Actor, key: str, now: dt.datetime | None = None,
                  ledger: LedgerService | None = None) -> Posted:
    """Redeem ``quantity`` of a reward for a member; ``key`` makes a resubmitted request post nothing new."""
    if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= 100:
        raise ValidationFailed({"quantity": [text("Enter a quantity from 1 to 100.", "请输入 1 到 100 之间的数量。")]})
    now = now or dt.datetime.now(dt.timezone.utc)
    ledger = ledger or LedgerService(services.engine)
    tables = entity_tables(services)
    items, members = tables[ITEM], tables["membership.member"]
    with write_transaction(ledger.engine) as c:
        member = c.execute(select(members.c.id, members.c.status).where(members.c.id == member_id, members.c.deleted_at.is_(None))).first()
        if member is None:
            raise RedemptionRefused(text("Member #{id} does not exist.", "会员 #{id} 不存在。", id=member_id))
        if member.status not in (None, "active"):
            raise RedemptionRefused(text("Only members with an active card can redeem points.", "只有卡状态正常的会员才能兑换积分。"))
        item = c.execute(select(items).where(items.c.id == item_id, items.c.deleted_at.is_(None))).mappings().first()
        if item is None:
            raise RedemptionRefused(text("Reward #{id} does not exist.", "奖品 #{id} 不存在。", id=item_id))
        _check_window(item, now)
        points = int(item["points"]) * quantity

        def take_stock(conn: Connection, entry_id: int) -> None:
            limit = item["per_member_limit"]
            if limit is not None:
                had = conn.execute(select(func.coalesce(func.sum(lt.redemption.c.quantity), 0))
                                   .where(lt.redemption.c.member_id == member_id, lt.redemption.c.item_id == item_id)).scalar_one()
                if had + quantity > limit:
                    raise RedemptionRefused(text("{name} is limited to {limit} per member; this member has redeemed {had}.",
                                                 "{name}每人限兑 {limit} 件，该会员已兑换 {had} 件。", name=item["name"], limit=limit, had=had))
            redeemed = {"redeemed": {"member": member_id, "quantity": quantity, "entry": entry_id}}
            if item["stock"] is not None:
                left = services.records.adjust_within(conn, ITEM, item_id, "stock", -quantity, actor, at_least=0, note=redeemed)
                if left is None:
                    raise RedemptionRefused(text("{name} is out of stock.", "{name}已兑完，库存不足。", name=item["name"]))
            conn.execute(lt.redemption.insert().values(entry_id=entry_id, member_id=member_id, item_id=item_id, quantity=quantity, points=points,
                                                       created_at=now))
            if item["kind"] == "coupon":  # a coupon reward issues the coupons it bought, in the same transaction
                from .coupons import issue_for_reward

                issue_for_reward(services, conn, item, member_id, quantity, entry_id, actor=actor, now=now)
            if item["stock"] is None:  # unlimited stock: nothing to count down, the redemption is still on the item's history
                record_event(conn, category="record", action="update", actor_id=actor.id, entity=ITEM, record_id=item_id, changes=redeemed)

        return ledger.redeem(member_id, points, key=key, actor=actor, source_type="reward", source_id=item_id,
                             memo=f"{item['name']} × {quantity}", conn=c, within=take_stock)


def _check_window(item, now: dt.datetime) -> None:
    if not item["active"]:
        raise RedemptionRefused(text("{name} is not available for redemption.", "{name}目前不可兑换。", name=item["name"]))
    start, end = item["available_from"], item["available_until"]
    if (start is not None and now < _aware(start)) or (end is not None and now > _aware(end)):
        raise RedemptionRefused(text("{name} can only be redeemed within its redemption window.", "{name}不在兑换时间内。", name=item["name"]))


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
