"""Earning rules (pure) and the order → points flow through the record service, on a real database."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from sqlalchemy import select

from crmkit.apps.membership.earning import ItemRule, PlanRules, expires_at, item_points, order_points
from crmkit.apps.membership.ledger import LedgerService
from crmkit.apps.membership.ledger import tables as lt
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed

from ledger_support import assert_sound, entry_count, make_member, make_plan

DAY = dt.date(2026, 5, 20)


@pytest.mark.parametrize("rounding,expected", [("floor", 99), ("round", 100), ("ceil", 100)])
def test_rounding_rules(rounding, expected):
    assert item_points(ItemRule(1, "consumption", per_yuan=D(1), rounding=rounding), D("99.50"), level_id=None, day=DAY) == expected


def test_level_multiplier_bonus_period_fixed_points_and_caps():
    rule = ItemRule(1, "consumption", per_yuan=D("0.5"), fixed_points=10, multipliers={3: D("1.5")},
                    periods=((dt.date(2026, 5, 18), dt.date(2026, 5, 24), D(2)),), cap_per_order=500, cap_per_day=700)
    assert item_points(rule, D(100), level_id=None, day=dt.date(2026, 6, 1)) == 60  # 100 × 0.5 + 10
    assert item_points(rule, D(100), level_id=3, day=dt.date(2026, 6, 1)) == 85  # × 1.5 level
    assert item_points(rule, D(100), level_id=3, day=DAY) == 160  # × 2 in the bonus week
    assert item_points(rule, D(1000), level_id=3, day=DAY) == 500  # capped per order
    assert item_points(rule, D(1000), level_id=3, day=DAY, earned_today=600) == 100  # what is left of the daily cap
    assert item_points(rule, D(1000), level_id=3, day=DAY, earned_today=900) == 0


def test_order_points_uses_items_of_the_order_kind_and_expiry_rules():
    plan = PlanRules(1, dt.date(2026, 1, 1), dt.date(2026, 12, 31), (ItemRule(1, "consumption", per_yuan=D(1)), ItemRule(2, "purchase", per_yuan=D(2)),
                                                                  ItemRule(3, "activity", fixed_points=50)), expiry_rule="months_after_earn", expiry_months=6)
    assert order_points(plan, "consumption", D(10), level_id=None, day=DAY) == {1: 10}
    assert order_points(plan, "purchase", D(10), level_id=None, day=DAY) == {2: 20}
    at = dt.datetime(2026, 5, 20, 3, tzinfo=dt.timezone.utc)
    assert expires_at(plan, at) == dt.datetime(2026, 11, 20, 3, tzinfo=dt.timezone.utc)
    end = PlanRules(1, dt.date(2026, 1, 1), dt.date(2026, 12, 31), (), expiry_rule="plan_end")
    assert expires_at(end, at) == dt.datetime(2026, 12, 31, 16, tzinfo=dt.timezone.utc)  # midnight in Shanghai


def order(services, member, amount, status="paid", **extra) -> int:
    return services.records.create("membership.order", {"member": member, "amount": amount, "payment_status": status,
                                                        "ordered_at": "2026-05-20T10:00:00+08:00", **extra}, SYSTEM)


def update(services, key, rid, data):
    row = services.queries.get(key, rid, SYSTEM)
    services.records.update(key, rid, data, SYSTEM, expected_version=row["row_version"])


def test_paid_order_earns_once_with_level_multiplier(services):
    gold = services.records.create("membership.level", {"name": "金卡", "code": "GOLD", "level_value": 2}, SYSTEM)
    member = make_member(services, level=gold)
    make_plan(services, items=[{"name": "消费", "kind": "consumption", "per_yuan": "1", "rounding": "round",
                                "level_multipliers": [{"level": gold, "multiplier": "1.5"}]}], upgrade_per_yuan="1")
    oid = order(services, member, "199.90")
    lg = LedgerService(services.engine)
    assert lg.balances(member)["reward"]["wallet"] == 300  # round(199.90 × 1.5) = 300
    assert lg.balances(member)["upgrade"]["wallet"] == 199
    update(services, "membership.order", oid, {"store": None})  # an unrelated edit posts nothing new
    assert entry_count(services, source_id=str(oid)) == 2
    assert_sound(services)


def test_pending_purchase_confirms_on_payment_and_cancel_reverses(services):
    member = make_member(services)
    make_plan(services, items=[{"name": "购买", "kind": "purchase", "per_yuan": "2"}])
    lg = LedgerService(services.engine)
    oid = order(services, member, "100", status="pending", kind="purchase")
    assert lg.balances(member)["reward"] == {"wallet": 0, "pending": 200}
    update(services, "membership.order", oid, {"payment_status": "paid"})
    assert lg.balances(member)["reward"] == {"wallet": 200, "pending": 0}
    other = order(services, member, "50", status="pending", kind="purchase")
    update(services, "membership.order", other, {"payment_status": "cancelled"})
    assert lg.balances(member)["reward"] == {"wallet": 200, "pending": 0}
    assert_sound(services)


def test_partial_then_full_refund_reverses_in_proportion(services):
    member = make_member(services)
    make_plan(services, per_yuan="1")
    lg = LedgerService(services.engine)
    oid = order(services, member, "300")
    update(services, "membership.order", oid, {"refunded_amount": "100"})
    assert lg.balances(member)["reward"]["wallet"] == 200
    update(services, "membership.order", oid, {"refunded_amount": "100"})  # the same refund again: nothing more
    assert lg.balances(member)["reward"]["wallet"] == 200
    update(services, "membership.order", oid, {"refunded_amount": "300"})
    assert lg.balances(member)["reward"]["wallet"] == 0
    kinds = [(h["kind"], h["amount"], h["reversal_of"] is not None) for h in lg.history(member)]
    assert kinds == [("reverse", -200, True), ("reverse", -100, True), ("earn", 300, False)]
    assert_sound(services)


def test_daily_cap_spans_orders_of_the_same_day(services):
    member = make_member(services)
    make_plan(services, items=[{"name": "消费", "kind": "consumption", "per_yuan": "1", "cap_per_day": 250}])
    lg = LedgerService(services.engine)
    order(services, member, "200")
    order(services, member, "200")
    order(services, member, "200")
    assert lg.balances(member)["reward"]["wallet"] == 250
    assert entry_count(services, kind="earn") == 2  # the third order earns nothing, so posts nothing


def test_points_expire_per_plan_rule(services):
    member = make_member(services)
    make_plan(services, expiry_rule="months_after_earn", expiry_months=3)
    lg = LedgerService(services.engine)
    order(services, member, "80")
    with services.engine.connect() as c:
        exp = c.execute(select(lt.lot.c.expires_at)).scalar_one()
    assert exp.replace(tzinfo=dt.timezone.utc) == dt.datetime(2026, 8, 20, 2, tzinfo=dt.timezone.utc)
    assert lg.expire_due(dt.datetime(2026, 8, 20, 3, tzinfo=dt.timezone.utc)) == 1
    assert lg.balances(member)["reward"]["wallet"] == 0


def test_no_active_plan_means_no_points_and_the_order_still_saves(services):
    member = make_member(services)
    oid = order(services, member, "100")
    assert services.queries.get("membership.order", oid, SYSTEM)["amount"] is not None
    assert entry_count(services) == 0


def test_a_failing_posting_rolls_back_the_order(services, monkeypatch):
    """The order and its points share one transaction: if posting fails, the order is not saved either."""
    member = make_member(services)
    make_plan(services)

    def boom(*a, **k):
        raise ValidationFailed({"points": ["boom"]})

    monkeypatch.setattr(LedgerService, "earn", boom)
    with pytest.raises(ValidationFailed):
        order(services, member, "100")
    assert services.queries.list("membership.order", SYSTEM, limit=5).rows == []
