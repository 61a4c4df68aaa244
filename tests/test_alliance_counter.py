"""Merchants, offers and the counter on a real database: the merchant workflow, offer limits, ledger postings
against the merchant counter account with reversal, purchases earning points, and contract-end reminders."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from sqlalchemy import func, select

from alliance_support import TODAY, al, al_app, earn, make_levels, make_member, make_merchant, make_offer, make_plan  # noqa: F401
from crmkit.apps.alliance.errors import OfferRefused
from crmkit.apps.alliance.offers import SOURCE, redeem_offer, reverse_redemption
from crmkit.apps.alliance.reminders import contract_reminders
from crmkit.apps.membership.ledger import InsufficientPoints, LedgerService, check_invariants
from crmkit.apps.membership.ledger import tables as lt
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed


def sound(services):
    with services.engine.connect() as c:
        assert check_invariants(c) == []


def count(services, entity, **where) -> int:
    flt = {"and": [{"field": k, "op": "eq", "value": v} for k, v in where.items()]} if where else None
    return services.queries.list(entity, SYSTEM, filter=flt, count="exact").total


def merchant_counter_lines(services) -> list[tuple]:
    with services.engine.connect() as c:
        return c.execute(select(lt.entry.c.kind, lt.entry.c.source_type, lt.entry.c.source_id, lt.line.c.amount)
                         .join(lt.line, lt.line.c.entry_id == lt.entry.c.id).join(lt.account, lt.account.c.id == lt.line.c.account_id)
                         .where(lt.account.c.kind == "merchant").order_by(lt.entry.c.id)).all()


# --- merchant workflow -------------------------------------------------------------------------------------
def test_approval_needs_a_contract_period_and_termination_a_reason(al):
    mid = make_merchant(al, "M1", formal=False)
    with pytest.raises(ValidationFailed) as exc:
        al.workflows.transition("alliance.merchant", mid, "approve", SYSTEM, {"contract_start": TODAY.isoformat()})
    assert "contract_end" in exc.value.field_errors
    with pytest.raises(ValidationFailed) as exc:
        al.workflows.transition("alliance.merchant", mid, "approve", SYSTEM,
                                {"contract_start": TODAY.isoformat(), "contract_end": (TODAY - dt.timedelta(days=1)).isoformat()})
    assert "must end after it starts" in str(exc.value.field_errors["_schema"][0].en)
    m = al.queries.get("alliance.merchant", mid, SYSTEM)
    assert m["workflow_state"] == "applying" and m["contract_start"] is None  # nothing stored
    end = TODAY + dt.timedelta(days=90)
    al.workflows.transition("alliance.merchant", mid, "approve", SYSTEM, {"contract_start": TODAY.isoformat(), "contract_end": end.isoformat()})
    m = al.queries.get("alliance.merchant", mid, SYSTEM)
    assert (m["workflow_state"], m["status"], m["contract_end"]) == ("formal", "formal", end)

    renewed = end + dt.timedelta(days=365)
    al.workflows.transition("alliance.merchant", mid, "renew", SYSTEM, {"contract_end": renewed.isoformat()})
    assert al.queries.get("alliance.merchant", mid, SYSTEM)["contract_end"] == renewed
    with pytest.raises(ValidationFailed) as exc:
        al.workflows.transition("alliance.merchant", mid, "renew", SYSTEM, {"contract_end": (TODAY - dt.timedelta(days=2)).isoformat()})
    assert "after today" in exc.value.field_errors["_schema"][0].en
    assert al.queries.get("alliance.merchant", mid, SYSTEM)["contract_end"] == renewed

    with pytest.raises(ValidationFailed) as exc:
        al.workflows.transition("alliance.merchant", mid, "terminate", SYSTEM, {"termination_reason": "  "})
    assert "termination_reason" in exc.value.field_errors
    al.workflows.transition("alliance.merchant", mid, "terminate", SYSTEM, {"termination_reason": "多次客诉"})
    m = al.queries.get("alliance.merchant", mid, SYSTEM)
    assert (m["workflow_state"], m["status"], m["termination_reason"]) == ("terminated", "terminated", "多次客诉")


def test_contract_end_reminders_follow_the_clock_and_do_not_repeat(al):
    soon = make_merchant(al, "SOON", end=TODAY + dt.timedelta(days=20))
    make_merchant(al, "LATER", end=TODAY + dt.timedelta(days=200))
    make_merchant(al, "APPLY", formal=False)
    assert contract_reminders(al, SYSTEM, today=TODAY) == 1
    assert contract_reminders(al, SYSTEM, today=TODAY + dt.timedelta(days=1)) == 0  # the same contract end: no second task
    logs = al.queries.list("alliance.contact_log", SYSTEM, count="exact")
    assert logs.total == 1 and logs.rows[0]["merchant"] == soon and "contract ends" in logs.rows[0]["follow_up_task"]
    assert contract_reminders(al, SYSTEM, today=TODAY + dt.timedelta(days=185), days=30) == 1  # LATER comes into the window


# --- offers and limits -------------------------------------------------------------------------------------
def test_discount_redemption_limits_levels_and_idempotency(al):
    silver, gold = make_levels(al)
    a, b = make_merchant(al, "A"), make_merchant(al, "B")
    m1, m2, lost = make_member(al, 1, silver), make_member(al, 2, gold), make_member(al, 3, gold, status="lost")
    offer = make_offer(al, a, per_member_limit=2, total_limit=3, levels=[{"level": gold}, {"level": silver}])
    gold_only = make_offer(al, a, name="金卡立减", kind="amount", amount_off="20", funded_by="club", levels=[{"level": gold}])

    r = redeem_offer(al, merchant_id=a, offer_id=offer, member_id=m1, actor=SYSTEM, key="k1", bill=D("88.85"))
    assert (r.benefit, r.points, r.entry_id, r.created) == (D("8.89"), 0, None, True)
    again = redeem_offer(al, merchant_id=a, offer_id=offer, member_id=m1, actor=SYSTEM, key="k1", bill=D("88.85"))
    assert (again.redemption_id, again.created) == (r.redemption_id, False)
    redeem_offer(al, merchant_id=a, offer_id=offer, member_id=m1, actor=SYSTEM, key="k2", bill=D("10"))
    with pytest.raises(OfferRefused, match="2 uses per member"):
        redeem_offer(al, merchant_id=a, offer_id=offer, member_id=m1, actor=SYSTEM, key="k3", bill=D("10"))
    redeem_offer(al, merchant_id=a, offer_id=offer, member_id=m2, actor=SYSTEM, key="k4", bill=D("10"))
    with pytest.raises(OfferRefused, match="used up"):
        redeem_offer(al, merchant_id=a, offer_id=offer, member_id=m2, actor=SYSTEM, key="k5", bill=D("10"))
    assert al.queries.get("alliance.offer", offer, SYSTEM)["used_count"] == 3
    assert count(al, "alliance.redemption", offer=offer) == 3  # refused uses stored nothing

    with pytest.raises(OfferRefused, match="level"):
        redeem_offer(al, merchant_id=a, offer_id=gold_only, member_id=m1, actor=SYSTEM, key="k6")
    with pytest.raises(OfferRefused, match="active card"):
        redeem_offer(al, merchant_id=a, offer_id=gold_only, member_id=lost, actor=SYSTEM, key="k7")
    with pytest.raises(OfferRefused, match="another merchant"):
        redeem_offer(al, merchant_id=b, offer_id=gold_only, member_id=m2, actor=SYSTEM, key="k8")
    assert redeem_offer(al, merchant_id=a, offer_id=gold_only, member_id=m2, actor=SYSTEM, key="k9", bill=D("15")).benefit == D("15")
    assert al.queries.get("alliance.offer", gold_only, SYSTEM)["used_count"] == 1


def test_blackout_validity_and_merchant_status_are_enforced_on_the_database(al):
    a = make_merchant(al, "A")
    applying = make_merchant(al, "P", formal=False)
    m = make_member(al, 1)
    black = make_offer(al, a, blackouts=[{"starts_on": (TODAY - dt.timedelta(days=1)).isoformat(), "ends_on": (TODAY + dt.timedelta(days=1)).isoformat()}])
    expired = make_offer(al, a, valid_until=(TODAY - dt.timedelta(days=1)).isoformat())
    pending = make_offer(al, applying)
    for offer, merchant, match in ((black, a, "blackout"), (expired, a, "not valid"), (pending, applying, "formal")):
        with pytest.raises(OfferRefused, match=match):
            redeem_offer(al, merchant_id=merchant, offer_id=offer, member_id=m, actor=SYSTEM, key=f"x{offer}", bill=D("50"))
    assert count(al, "alliance.redemption") == 0


def test_used_count_cannot_be_written_through_the_record_service(al):
    a = make_merchant(al, "A")
    with pytest.raises(ValidationFailed) as exc:
        make_offer(al, a, used_count=0 + 5)
    assert "used_count" in exc.value.field_errors


# --- the ledger ----------------------------------------------------------------------------------------------
def test_points_offer_posts_against_the_merchant_counter_and_reverses(al):
    a, b = make_merchant(al, "A"), make_merchant(al, "B")
    m = make_member(al, 1)
    earn(al, m, 1000, "seed")
    offer = make_offer(al, a, name="800 积分换 30 元", kind="points", points_cost=800, amount_off="30", funded_by="club")
    r = redeem_offer(al, merchant_id=a, offer_id=offer, member_id=m, actor=SYSTEM, key="p1")
    assert (r.points, r.benefit) == (800, D("30"))
    ledger = LedgerService(al.engine)
    assert ledger.balances(m)["reward"]["wallet"] == 200
    assert merchant_counter_lines(al) == [("redeem", SOURCE, str(a), 800)]
    red = al.queries.get("alliance.redemption", r.redemption_id, SYSTEM)
    assert red["entry_id"] == r.entry_id and red["points"] == 800 and red["funded_by"] == "club"
    sound(al)

    with pytest.raises(InsufficientPoints):
        redeem_offer(al, merchant_id=a, offer_id=offer, member_id=m, actor=SYSTEM, key="p2")
    assert al.queries.get("alliance.offer", offer, SYSTEM)["used_count"] == 1  # the refused use was rolled back
    other = make_offer(al, b, kind="points", points_cost=100, amount_off="5", funded_by="merchant")
    redeem_offer(al, merchant_id=b, offer_id=other, member_id=m, actor=SYSTEM, key="p3")

    with pytest.raises(OfferRefused, match="reason"):
        reverse_redemption(al, r.redemption_id, actor=SYSTEM, reason=" ")
    entry = reverse_redemption(al, r.redemption_id, actor=SYSTEM, reason="顾客退单")
    assert ledger.balances(m)["reward"]["wallet"] == 900
    assert al.queries.get("alliance.redemption", r.redemption_id, SYSTEM)["status"] == "reversed"
    assert al.queries.get("alliance.offer", offer, SYSTEM)["used_count"] == 0
    with pytest.raises(OfferRefused, match="already reversed"):
        reverse_redemption(al, r.redemption_id, actor=SYSTEM, reason="again")
    lines = merchant_counter_lines(al)
    assert lines == [("redeem", SOURCE, str(a), 800), ("redeem", SOURCE, str(b), 100), ("reverse", SOURCE, str(a), -800)]
    # per-merchant balance of the shared counter account, read from the entries' source
    per_merchant = {}
    for _kind, _src, merchant, amount in lines:
        per_merchant[merchant] = per_merchant.get(merchant, 0) + amount
    assert per_merchant == {str(a): 0, str(b): 100}
    with al.engine.connect() as c:
        assert c.execute(select(lt.entry.c.reversal_of).where(lt.entry.c.id == entry)).scalar_one() == r.entry_id
    sound(al)


def test_a_purchase_earns_points_from_the_merchant_counter_and_cancelling_reverses(al):
    make_plan(al, per_yuan="2")
    a = make_merchant(al, "A")
    m = make_member(al, 1)
    pid = al.records.create("alliance.purchase", {"ref": "P1", "merchant": a, "member": m, "amount": "88.60",
                                                  "purchased_at": dt.datetime.now(dt.timezone.utc).isoformat()}, SYSTEM)
    row = al.queries.get("alliance.purchase", pid, SYSTEM)
    assert row["points"] == 177  # floor(88.60 × 2)
    ledger = LedgerService(al.engine)
    assert ledger.balances(m)["reward"]["wallet"] == 177
    assert merchant_counter_lines(al) == [("earn", SOURCE, str(a), -177)]
    with pytest.raises(ValidationFailed) as exc:
        al.records.create("alliance.purchase", {"ref": "P2", "merchant": a, "member": m, "amount": "10", "points": 99999,
                                                "purchased_at": dt.datetime.now(dt.timezone.utc).isoformat()}, SYSTEM)
    assert "points" in exc.value.field_errors
    al.records.update("alliance.purchase", pid, {"status": "cancelled"}, SYSTEM, expected_version=row["row_version"])
    assert ledger.balances(m)["reward"]["wallet"] == 0
    assert [x[0] for x in merchant_counter_lines(al)] == ["earn", "reverse"]
    sound(al)


def test_the_app_declares_no_points_side_table(al):
    from crmkit.apps.alliance import package

    assert package.hooks.table_sets == []
    with al.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(lt.redemption)).scalar_one() == 0
