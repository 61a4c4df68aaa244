"""Settlement statements: totals against an independent computation, frozen after confirmation, corrections only by
adjustment entries, and a formula-safe XLSX export. Also reputation (rating history, reviews)."""
from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal as D

import pytest
from openpyxl import load_workbook

from alliance_support import TODAY, al, al_app, earn, make_member, make_merchant, make_offer, make_plan  # noqa: F401
from crmkit.apps.alliance.errors import OfferRefused, SettlementRefused
from crmkit.apps.alliance.offers import redeem_offer, reverse_redemption
from crmkit.apps.alliance.reputation import rate_merchant, review_redemption
from crmkit.apps.alliance.settlement import add_adjustment, create_statement, export_xlsx
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed

START = TODAY - dt.timedelta(days=40)
NOON = dt.time(4)  # 12:00 China time


def at(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, NOON, dt.timezone.utc)


@pytest.fixture
def period(al):
    """Uses of three offers over 40 days at merchant A (and one at B), with the expected totals computed by hand."""
    make_plan(al)
    a = make_merchant(al, "A", start=START - dt.timedelta(days=5), fee_rate="3", point_value="0.02")
    b = make_merchant(al, "B", start=START - dt.timedelta(days=5))
    members = [make_member(al, i) for i in range(1, 5)]
    for m in members:
        earn(al, m, 5000, f"seed{m}")
    disc = make_offer(al, a, valid_from=START.isoformat())
    club = make_offer(al, a, name="立减 15", kind="amount", amount_off="15", funded_by="club", valid_from=START.isoformat())
    pts = make_offer(al, a, name="500 积分换饮品", kind="points", points_cost=500, amount_off="18", funded_by="club", valid_from=START.isoformat())
    other = make_offer(al, b, valid_from=START.isoformat())
    uses = [(disc, members[0], "120.00", 0), (disc, members[1], "45.50", 1), (club, members[2], "60", 2), (pts, members[3], None, 3),
            (pts, members[0], None, 4), (club, members[1], "10", 5), (disc, members[2], "99.99", 6)]
    ids = []
    for i, (offer, member, bill, day) in enumerate(uses):
        r = redeem_offer(al, merchant_id=a, offer_id=offer, member_id=member, actor=SYSTEM, key=f"u{i}", bill=D(bill) if bill else None,
                         now=at(START + dt.timedelta(days=day)))
        ids.append(r.redemption_id)
    redeem_offer(al, merchant_id=b, offer_id=other, member_id=members[0], actor=SYSTEM, key="ob", bill=D("500"), now=at(START))
    redeem_offer(al, merchant_id=a, offer_id=disc, member_id=members[3], actor=SYSTEM, key="late", bill=D("100"), now=at(START + dt.timedelta(days=20)))
    for i, amount in enumerate(["200.00", "333.33"]):
        al.records.create("alliance.purchase", {"ref": f"PP{i}", "merchant": a, "member": members[i], "amount": amount,
                                                "purchased_at": at(START + dt.timedelta(days=i)).isoformat()}, SYSTEM)
    reverse_redemption(al, ids[1], actor=SYSTEM, reason="退单")  # reversed before settlement: not in the statement
    expected = {
        "redemptions": 6,
        "merchant_benefits": D("12.00") + D("10.00"),  # 10 % of 120 and of 99.99 (half up)
        "club_benefits": D("15") + D("10") + D("18") * 2,  # the fixed 15 is capped by the 10 bill
        "points": 1000, "points_value": D("20.00"),
        "member_sales": D("533.33"), "fees": D("16.00"),
    }
    expected["amount_due"] = expected["club_benefits"] + expected["points_value"] - expected["fees"]
    return {"a": a, "b": b, "ids": ids, "expected": expected, "end": START + dt.timedelta(days=10)}


def test_statement_totals_match_an_independent_computation(al, period):
    sid = create_statement(al, period["a"], START, period["end"], actor=SYSTEM)
    s = al.queries.get("alliance.settlement", sid, SYSTEM)
    got = {k: s[k] for k in period["expected"]}
    assert {k: (D(str(v)) if not isinstance(v, int) else v) for k, v in got.items()} == period["expected"]
    assert s["workflow_state"] == "draft" and s["ref"].startswith("S-A-")
    with pytest.raises(ValidationFailed):  # one statement per merchant and period
        create_statement(al, period["a"], START, period["end"], actor=SYSTEM)
    with pytest.raises(SettlementRefused, match="end on or after"):
        create_statement(al, period["a"], period["end"], START, actor=SYSTEM)


def test_a_settled_period_changes_only_by_adjustment_entries(al, period):
    sid = create_statement(al, period["a"], START, period["end"], actor=SYSTEM)
    with pytest.raises(SettlementRefused, match="recomputed"):
        add_adjustment(al, sid, D("-5"), "草稿不能调整", actor=SYSTEM)
    al.workflows.transition("alliance.settlement", sid, "confirm", SYSTEM)
    al.workflows.transition("alliance.settlement", sid, "settle", SYSTEM)
    s = al.queries.get("alliance.settlement", sid, SYSTEM)
    assert s["workflow_state"] == "settled" and s["settled_at"] is not None
    with pytest.raises(SettlementRefused, match="cannot be changed"):
        al.records.update("alliance.settlement", sid, {"fees": "0"}, SYSTEM, expected_version=s["row_version"])
    with pytest.raises(SettlementRefused, match="sum of the adjustment"):
        al.records.update("alliance.settlement", sid, {"adjustments_total": "99"}, SYSTEM, expected_version=s["row_version"])

    # a redemption reversed after settlement: the points come back, and the statement gets an adjustment entry
    reverse_redemption(al, period["ids"][3], actor=SYSTEM, reason="会员投诉，撤销兑换")
    add_adjustment(al, sid, D("-18") - D("10.00"), "撤销已结算的积分兑换", actor=SYSTEM, redemption_id=period["ids"][3])
    with pytest.raises(SettlementRefused, match="reason"):
        add_adjustment(al, sid, D("1"), " ", actor=SYSTEM)
    s = al.queries.get("alliance.settlement", sid, SYSTEM)
    assert D(str(s["adjustments_total"])) == D("-28.00")
    assert [(D(str(x["amount"])), x["redemption"]) for x in s["adjustments"]] == [(D("-28.00"), period["ids"][3])]
    exp = period["expected"]
    assert (s["redemptions"], D(str(s["amount_due"]))) == (exp["redemptions"], exp["amount_due"])  # the settled totals stay


def test_xlsx_export_lists_the_statement_and_neutralises_formulas(al, period):
    al.records.update("alliance.merchant", period["a"], {"name": "=HYPERLINK(\"http://x\")"}, SYSTEM,
                      expected_version=al.queries.get("alliance.merchant", period["a"], SYSTEM)["row_version"])
    sid = create_statement(al, period["a"], START, period["end"], actor=SYSTEM)
    wb = load_workbook(io.BytesIO(export_xlsx(al, sid, SYSTEM)))
    summary = {r[0]: r[1] for r in wb["Statement"].iter_rows(values_only=True)}
    assert summary["商家 Merchant"].startswith("'=")
    assert D(str(summary["应付商家 Due"])) == period["expected"]["amount_due"]
    rows = list(wb["Redemptions"].iter_rows(values_only=True))[1:]
    assert len(rows) == period["expected"]["redemptions"]
    assert sum(r[4] for r in rows) == 1000


def test_rating_history_and_reviews(al, period):
    rate_merchant(al, period["a"], 4, actor=SYSTEM)
    rate_merchant(al, period["a"], 2, actor=SYSTEM)
    with pytest.raises(OfferRefused):
        rate_merchant(al, period["a"], 6, actor=SYSTEM)
    assert al.queries.get("alliance.merchant", period["a"], SYSTEM)["rating"] == 2
    hist = al.queries.list("alliance.rating_change", SYSTEM, sort=["id"]).rows
    assert [(h["old_rating"], h["new_rating"]) for h in hist] == [(None, 4), (4, 2)]
    with pytest.raises(ValidationFailed):  # the rating is read-only in forms: history cannot be skipped
        al.records.update("alliance.merchant", period["a"], {"rating": 5}, SYSTEM,
                          expected_version=al.queries.get("alliance.merchant", period["a"], SYSTEM)["row_version"])
    review_redemption(al, period["ids"][0], 5, "很好", actor=SYSTEM)
    with pytest.raises(ValidationFailed):  # one review per redemption
        review_redemption(al, period["ids"][0], 1, "再评", actor=SYSTEM)
    with pytest.raises(OfferRefused):
        review_redemption(al, period["ids"][1], 3, "reversed", actor=SYSTEM)
