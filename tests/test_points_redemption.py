"""Redeeming catalogue rewards: balance, stock, per-member limits and the time window, checked together."""
from __future__ import annotations

import datetime as dt

import pytest

from crmkit.apps.membership.card_actions import card_action
from sqlalchemy import select

from crmkit.apps.membership.ledger import InsufficientPoints, LedgerService, RedemptionRefused
from crmkit.apps.membership.ledger import tables as lt
from crmkit.apps.membership.redemption import redeem_reward
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.packages import UnknownAction, run_action

from ledger_support import assert_sound, entry_count, make_member

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)


def reward(services, **fields) -> int:
    data = {"name": "保温杯", "code": "CUP", "kind": "goods", "points": 100, "stock": 5, **fields}
    return services.records.create("membership.reward_item", data, SYSTEM)


def stock(services, item) -> int | None:
    return services.queries.get("membership.reward_item", item, SYSTEM)["stock"]


def funded_member(services, points=1000, **kw) -> int:
    m = make_member(services, **kw)
    LedgerService(services.engine).earn(m, points, key=f"fund:{m}", actor=SYSTEM)
    return m


def test_redeem_takes_points_and_stock_once_per_key(services):
    m, item = funded_member(services), reward(services)
    p1 = redeem_reward(services, m, item, 2, actor=SYSTEM, key="web:1", now=NOW)
    p2 = redeem_reward(services, m, item, 2, actor=SYSTEM, key="web:1", now=NOW)  # a resubmitted form
    assert p1.created and not p2.created and p1.entry_id == p2.entry_id
    assert LedgerService(services.engine).balances(m)["reward"]["wallet"] == 800
    assert stock(services, item) == 3
    with services.engine.connect() as c:
        assert [tuple(r) for r in c.execute(select(lt.redemption.c.quantity, lt.redemption.c.points))] == [(2, 200)]
    assert_sound(services)


def test_out_of_stock_refuses_and_keeps_points(services):
    m, item = funded_member(services), reward(services, stock=1)
    with pytest.raises(RedemptionRefused) as exc:
        redeem_reward(services, m, item, 2, actor=SYSTEM, key="k", now=NOW)
    assert "库存不足" in exc.value.message.zh
    assert LedgerService(services.engine).balances(m)["reward"]["wallet"] == 1000
    assert stock(services, item) == 1 and entry_count(services, kind="redeem") == 0


def test_insufficient_points_keep_the_stock(services):
    m, item = funded_member(services, points=150), reward(services)
    with pytest.raises(InsufficientPoints):
        redeem_reward(services, m, item, 2, actor=SYSTEM, key="k", now=NOW)
    assert stock(services, item) == 5


def test_per_member_limit(services):
    m, item = funded_member(services), reward(services, per_member_limit=2)
    redeem_reward(services, m, item, 1, actor=SYSTEM, key="a", now=NOW)
    redeem_reward(services, m, item, 1, actor=SYSTEM, key="b", now=NOW)
    with pytest.raises(RedemptionRefused) as exc:
        redeem_reward(services, m, item, 1, actor=SYSTEM, key="c", now=NOW)
    assert "limited to 2" in str(exc.value)
    other = funded_member(services, mobile="13900139000")
    redeem_reward(services, other, item, 2, actor=SYSTEM, key="d", now=NOW)  # the limit is per member
    assert stock(services, item) == 1


def test_time_window_and_inactive_rewards(services):
    m = funded_member(services)
    early = reward(services, code="EARLY", available_from="2026-07-01T00:00:00+00:00")
    late = reward(services, code="LATE", available_until="2026-05-01T00:00:00+00:00")
    off = reward(services, code="OFF", active=False)
    for item in (early, late, off):
        with pytest.raises(RedemptionRefused):
            redeem_reward(services, m, item, 1, actor=SYSTEM, key=f"w{item}", now=NOW)
    redeem_reward(services, m, early, 1, actor=SYSTEM, key="ok", now=dt.datetime(2026, 7, 2, tzinfo=dt.timezone.utc))
    assert entry_count(services, kind="redeem") == 1


def test_cash_reward_without_stock_is_unlimited(services):
    m, item = funded_member(services), reward(services, code="CASH", kind="cash", stock=None, cash_amount="10", points=500)
    redeem_reward(services, m, item, 2, actor=SYSTEM, key="cash", now=NOW)
    assert LedgerService(services.engine).balances(m)["reward"]["wallet"] == 0 and stock(services, item) is None


def test_lost_card_cannot_redeem_and_bad_quantity_is_refused(services):
    m, item = funded_member(services), reward(services)
    with pytest.raises(ValidationFailed):
        redeem_reward(services, m, item, 0, actor=SYSTEM, key="q", now=NOW)
    card_action(services, SYSTEM, m, "report_lost", "顾客来电挂失")  # the card status changes only through card actions
    with pytest.raises(RedemptionRefused):
        redeem_reward(services, m, item, 1, actor=SYSTEM, key="lost", now=NOW)
    assert stock(services, item) == 5


def test_stock_change_is_audited_and_bumps_the_row_version(services):
    m, item = funded_member(services), reward(services)
    before = services.queries.get("membership.reward_item", item, SYSTEM)["row_version"]
    redeem_reward(services, m, item, 1, actor=SYSTEM, key="v", now=NOW)
    assert services.queries.get("membership.reward_item", item, SYSTEM)["row_version"] == before + 1
    # the record service's own audit entry and record.updated event (webhooks and automations see stock move)
    from sqlalchemy import select

    from crmkit.runtime.storage import platform_tables as pt

    with services.engine.connect() as conn:
        audit = conn.execute(select(pt.audit.c.changes).where(pt.audit.c.entity == "membership.reward_item", pt.audit.c.record_id == item)
                             .order_by(pt.audit.c.id.desc())).scalars().first()
        event = conn.execute(select(pt.outbox.c.topic, pt.outbox.c.payload).where(pt.outbox.c.entity == "membership.reward_item",
                             pt.outbox.c.record_id == item).order_by(pt.outbox.c.id.desc())).first()
    assert audit["stock"] == [5, 4] and audit["redeemed"]["member"] == m
    assert event.topic == "record.updated" and event.payload["changes"]["stock"] == [5, 4]


def test_named_app_actions(services):
    m, item = funded_member(services), reward(services, available_from=None)
    out = run_action(services, "membership", "points.redeem", SYSTEM, {"member": m, "item": item, "key": "act:1"})
    assert out["points"] == -100 and out["created"]
    adj = run_action(services, "membership", "points.adjust", SYSTEM, {"member": m, "points": 50, "reason": "门店补偿"})
    assert adj["status"] == "applied"
    assert run_action(services, "membership", "points.expire_due", SYSTEM, {})["entries"] == 0
    with pytest.raises(UnknownAction):
        run_action(services, "membership", "points.nope", SYSTEM, {})


def test_app_actions_check_the_member_and_the_policy(services):
    from crmkit.runtime.actor import Actor
    from crmkit.runtime.errors import PermissionDenied, RecordNotFound

    m = funded_member(services)
    with pytest.raises(RecordNotFound):
        run_action(services, "membership", "points.adjust", SYSTEM, {"member": 99999, "points": 5, "reason": "x"})
    nobody = Actor(id=77, username="nobody")
    with pytest.raises((PermissionDenied, RecordNotFound)):
        run_action(services, "membership", "points.adjust", nobody, {"member": m, "points": 5, "reason": "x"})
    assert entry_count(services, kind="adjust") == 0
