"""Coupons: issuing (one member, a segment inline and as a job), the redemption rules, one-time use, expiry, and
coupons bought with points from the reward catalogue."""
from __future__ import annotations

import datetime as dt
import decimal

import pytest
from sqlalchemy import func, select

from crmkit.apps.membership import coupons
from crmkit.apps.membership.ledger import LedgerService, RedemptionRefused
from crmkit.apps.membership.redemption import redeem_reward
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.packages import run_action
from crmkit.runtime.storage import platform_tables as pt

from ledger_support import make_member

NOW = dt.datetime(2026, 6, 1, 4, 0, tzinfo=dt.timezone.utc)


def template(services, **fields) -> int:
    data = {"name": "满100减20", "code": "M100J20", "kind": "amount", "amount": "20", "min_spend": "100", "validity": "days", "valid_days": 30,
            **fields}
    return services.records.create("membership.coupon_template", data, SYSTEM)


def store(services, code="SH01") -> int:
    return services.records.create("membership.store", {"name": f"门店{code}", "code": code}, SYSTEM)


def coupon(services, cid) -> dict:
    return services.queries.get("membership.coupon", cid, SYSTEM)


def coupon_count(services, **where) -> int:
    t = services.records.table_cache.tables(services.store.catalog())["membership.coupon"]
    with services.engine.connect() as c:
        q = select(func.count()).select_from(t)
        for k, v in where.items():
            q = q.where(t.c[k] == v)
        return c.execute(q).scalar_one()


def test_issue_one_coupon_with_unguessable_unique_code_and_validity(services):
    m, tpl = make_member(services), template(services)
    cid = coupons.issue(services, tpl, m, SYSTEM, now=NOW)
    c = coupon(services, cid)
    assert c["status"] == "issued" and c["member"] == m and c["template"] == tpl
    assert len(c["code"]) == 16 and set(c["code"]) <= set(coupons.CODE_ALPHABET)
    assert c["valid_until"] == NOW + dt.timedelta(days=30)
    codes = {coupon(services, coupons.issue(services, tpl, m, SYSTEM, now=NOW))["code"] for _ in range(20)}
    assert len(codes) == 20 and c["code"] not in codes
    with services.engine.connect() as conn:  # audited and an outbox event, like every record write
        assert conn.execute(select(func.count()).select_from(pt.outbox).where(pt.outbox.c.entity == "membership.coupon",
                                                                            pt.outbox.c.record_id == cid)).scalar_one() == 1


def test_fixed_dates_run_whole_business_days_and_an_ended_template_issues_nothing(services):
    m = make_member(services)
    tpl = template(services, validity="fixed", valid_from="2026-06-01", valid_until="2026-06-30")
    c = coupon(services, coupons.issue(services, tpl, m, SYSTEM, now=NOW))
    assert c["valid_until"] == dt.datetime(2026, 6, 30, 16, 0, tzinfo=dt.timezone.utc)  # end of 30 June, China time
    old = template(services, code="OLD", validity="fixed", valid_until="2026-05-01")
    with pytest.raises(coupons.CouponRefused):
        coupons.issue(services, old, m, SYSTEM, now=NOW)
    assert coupon_count(services, template=old) == 0


def test_issue_key_makes_a_repeat_issue_nothing(services):
    m, tpl = make_member(services), template(services)
    a = run_action(services, "membership", "coupons.issue", SYSTEM, {"template": tpl, "member": m, "key": "welcome:1"})
    b = run_action(services, "membership", "coupons.issue", SYSTEM, {"template": tpl, "member": m, "key": "welcome:1"})
    assert a == b and coupon_count(services, member=m) == 1


def test_segment_issue_inline_reaches_only_matching_members(services):
    tpl = template(services)
    gold = [make_member(services, name=f"金{i}", mobile=f"1390000000{i}") for i in range(3)]
    for m in gold:
        services.records.update("membership.member", m, {"tags": ["高价值"]}, SYSTEM, expected_version=1)
    other = make_member(services, name="普通", mobile="13700000000")
    res = run_action(services, "membership", "coupons.issue", SYSTEM,
                     {"template": tpl, "filter": {"field": "tags", "op": "contains_any", "value": ["高价值"]}, "key": "seg:vip"})
    assert res == {"issued": 3, "skipped": 0, "members": 3}
    assert coupon_count(services, member=other) == 0 and all(coupon_count(services, member=m) == 1 for m in gold)
    again = run_action(services, "membership", "coupons.issue", SYSTEM,
                       {"template": tpl, "filter": {"field": "tags", "op": "contains_any", "value": ["高价值"]}, "key": "seg:vip"})
    assert again["issued"] == 0 and again["skipped"] == 3


def test_large_segment_runs_as_a_job_with_progress(services, monkeypatch):
    monkeypatch.setattr(coupons, "INLINE_LIMIT", 2)
    tpl = template(services)
    members = [make_member(services, name=f"会员{i}", mobile=f"1360000000{i}") for i in range(5)]
    res = coupons.issue_to_segment(services, tpl, {"field": "joined_on", "op": "eq", "value": "2026-01-01"}, SYSTEM)
    assert res["members"] == 5 and "job" in res and coupon_count(services) == 0
    assert services.jobs.execute(res["job"]) == "succeeded"
    job = services.jobs.get(res["job"])
    assert job["result"] == {"issued": 5, "skipped": 0, "members": 5}
    assert job["progress_done"] == 5
    assert sorted(coupon(services, i)["member"] for i in range(1, 6)) == sorted(members)


def test_segment_with_a_bad_filter_is_refused_and_issues_nothing(services):
    tpl = template(services)
    make_member(services)
    with pytest.raises(Exception) as err:
        coupons.issue_to_segment(services, tpl, {"field": "no_such_field", "op": "eq", "value": 1}, SYSTEM)
    assert "no_such_field" in str(err.value.message if hasattr(err.value, "message") else err.value)
    assert coupon_count(services) == 0


def test_redeem_checks_minimum_spend_then_uses_the_coupon_once(services):
    m, tpl = make_member(services), template(services)
    code = coupon(services, coupons.issue(services, tpl, m, SYSTEM, now=NOW))["code"]
    with pytest.raises(coupons.CouponRefused) as err:
        coupons.redeem(services, code, SYSTEM, amount="99.99", now=NOW + dt.timedelta(hours=1))
    assert "100.00" in str(err.value.message)
    done = coupons.redeem(services, code.lower()[:8] + "-" + code.lower()[8:], SYSTEM, amount="128", now=NOW + dt.timedelta(hours=1))
    assert done.discount == decimal.Decimal("20.00") and done.pay == decimal.Decimal("108.00")
    c = coupon(services, done.coupon_id)
    assert c["status"] == "used" and c["used_at"] == NOW + dt.timedelta(hours=1) and c["discount"] == decimal.Decimal("20.00")
    with pytest.raises(coupons.CouponRefused, match="already used"):
        coupons.redeem(services, code, SYSTEM, amount="500", now=NOW + dt.timedelta(hours=2))


def test_redeem_refuses_expired_void_unknown_and_not_yet_valid(services):
    m, tpl = make_member(services), template(services, valid_days=1)
    code = coupon(services, coupons.issue(services, tpl, m, SYSTEM, now=NOW))["code"]
    with pytest.raises(coupons.CouponRefused, match="expired"):
        coupons.redeem(services, code, SYSTEM, amount="200", now=NOW + dt.timedelta(days=2))
    void_id = coupons.issue(services, tpl, m, SYSTEM, now=NOW)
    run_action(services, "membership", "coupons.void", SYSTEM, {"coupon": void_id, "reason": "发错人"})
    with pytest.raises(coupons.CouponRefused, match="voided"):
        coupons.redeem(services, coupon(services, void_id)["code"], SYSTEM, amount="200", now=NOW)
    with pytest.raises(coupons.CouponNotFound):
        coupons.redeem(services, "NOPE-NOPE", SYSTEM, amount="200", now=NOW)
    later = template(services, code="LATER", validity="fixed", valid_from="2026-07-01", valid_until="2026-07-31")
    with pytest.raises(coupons.CouponRefused, match="not valid yet"):
        coupons.redeem(services, coupon(services, coupons.issue(services, later, m, SYSTEM, now=NOW))["code"], SYSTEM, amount="200", now=NOW)
    with pytest.raises(ValidationFailed):
        coupons.redeem(services, code, SYSTEM, amount="abc", now=NOW)
    assert coupon_count(services, status="used") == 0


def test_store_and_category_limits_and_percentage_with_cap(services):
    m = make_member(services)
    sh, bj = store(services, "SH01"), store(services, "BJ01")
    tpl = template(services, code="RATE", kind="rate", amount=None, discount_rate="20", max_discount="30", min_spend="0",
                   store_codes=["SH01"], categories=["餐饮"])
    code = coupon(services, coupons.issue(services, tpl, m, SYSTEM, now=NOW))["code"]
    with pytest.raises(coupons.CouponRefused, match="SH01"):
        coupons.redeem(services, code, SYSTEM, amount="100", store_id=bj, category="餐饮", now=NOW)
    with pytest.raises(coupons.CouponRefused, match="餐饮"):
        coupons.redeem(services, code, SYSTEM, amount="100", store_id=sh, category="服装", now=NOW)
    done = coupons.redeem(services, code, SYSTEM, amount="500", store_id=sh, category="餐饮", now=NOW)
    assert done.discount == decimal.Decimal("30")  # 20% of 500 = 100, capped at 30
    assert coupon(services, done.coupon_id)["used_store"] == sh


def test_redeem_against_an_order_takes_its_amount_store_and_member(services):
    m, other = make_member(services), make_member(services, name="李四", mobile="13900001111")
    sh = store(services, "SH01")
    tpl = template(services, store_codes=["SH01"])
    order = services.records.create("membership.order", {"member": m, "store": sh, "amount": "150", "kind": "consumption"}, SYSTEM)
    theirs = coupon(services, coupons.issue(services, tpl, other, SYSTEM))["code"]
    with pytest.raises(coupons.CouponRefused, match="another member"):
        coupons.redeem(services, theirs, SYSTEM, order_id=order)
    mine = coupons.issue(services, tpl, m, SYSTEM)
    done = coupons.redeem(services, coupon(services, mine)["code"], SYSTEM, order_id=order)
    c = coupon(services, mine)
    assert done.pay == decimal.Decimal("130.00") and c["used_in_order"] == order and c["order_amount"] == decimal.Decimal("150.00")


def test_expiry_job_marks_past_validity_expired_and_is_idempotent(services):
    m, tpl = make_member(services), template(services, valid_days=1)
    due = [coupons.issue(services, tpl, m, SYSTEM, now=NOW) for _ in range(3)]
    fresh = coupons.issue(services, tpl, m, SYSTEM, now=NOW + dt.timedelta(days=5))
    used = coupons.issue(services, tpl, m, SYSTEM, now=NOW)
    coupons.redeem(services, coupon(services, used)["code"], SYSTEM, amount="100", now=NOW)
    later = (NOW + dt.timedelta(days=3)).isoformat()
    job = services.jobs.submit(coupons.EXPIRE_JOB, {"now": later}, actor=None)
    assert services.jobs.execute(job) == "succeeded" and services.jobs.get(job)["result"] == {"expired": 3}
    assert [coupon(services, i)["status"] for i in due] == ["expired"] * 3
    assert coupon(services, fresh)["status"] == "issued" and coupon(services, used)["status"] == "used"
    versions = [coupon(services, i)["row_version"] for i in due]
    assert run_action(services, "membership", "coupons.expire_due", SYSTEM, {"now": later}) == {"expired": 0}
    assert [coupon(services, i)["row_version"] for i in due] == versions


def test_coupon_reward_redeemed_with_points_issues_real_coupons(services):
    m, tpl = make_member(services), template(services)
    LedgerService(services.engine).earn(m, 1000, key="fund", actor=SYSTEM)
    item = services.records.create("membership.reward_item", {"name": "20元券", "code": "C20", "kind": "coupon", "points": 200, "stock": 10,
                                                               "coupon_template": tpl}, SYSTEM)
    posted = redeem_reward(services, m, item, 2, actor=SYSTEM, key="web:c1", now=NOW)
    assert posted.amount == -400 and coupon_count(services, member=m, source="reward") == 2
    again = redeem_reward(services, m, item, 2, actor=SYSTEM, key="web:c1", now=NOW)  # a resubmitted form
    assert not again.created and coupon_count(services, member=m) == 2
    bare = services.records.create("membership.reward_item", {"name": "无模板券", "code": "C00", "kind": "coupon", "points": 100}, SYSTEM)
    with pytest.raises(RedemptionRefused, match="no coupon template"):
        redeem_reward(services, m, bare, 1, actor=SYSTEM, key="web:c2", now=NOW)
    assert LedgerService(services.engine).balances(m)["reward"]["wallet"] == 600  # the refused redemption took nothing


def test_redeem_page_shows_the_coupon_and_redeems_it(client, services, csrf_token):
    m, tpl = make_member(services), template(services)
    code = coupon(services, coupons.issue(services, tpl, m, SYSTEM))["code"]
    page = client.get(f"/membership/coupons/redeem?code={code}").get_data(as_text=True)
    assert code in page and "满100减20" in page and 'data-status="issued"' in page
    bad = client.post("/membership/coupons/redeem", data={"csrf_token": csrf_token, "code": code, "amount": "50"})
    assert bad.status_code == 409 and "100.00" in bad.get_data(as_text=True)
    assert coupon_count(services, status="used") == 0
    ok = client.post("/membership/coupons/redeem", data={"csrf_token": csrf_token, "code": code, "amount": "120"})
    assert ok.status_code == 302
    after = client.get(ok.headers["Location"]).get_data(as_text=True)
    assert 'data-status="used"' in after and coupon_count(services, status="used") == 1
    missing = client.get("/membership/coupons/redeem?code=ZZZZ")
    assert missing.status_code == 404
    no_csrf = client.post("/membership/coupons/redeem", data={"code": code, "amount": "120"})
    assert no_csrf.status_code == 400


def test_coupon_use_rate_report_counts_issued_and_used_per_template(services):
    from crmkit.runtime.reports.runner import run_report

    m, a, b = make_member(services), template(services), template(services, code="B", name="八折券", kind="rate", discount_rate="20")
    ca = [coupons.issue(services, a, m, SYSTEM, now=NOW) for _ in range(4)]
    coupons.issue(services, b, m, SYSTEM, now=NOW)
    coupons.redeem(services, coupon(services, ca[0])["code"], SYSTEM, amount="100", now=NOW)
    res = run_report(services, SYSTEM, services.store.catalog().report("membership.coupon_use_rate"))
    by = {r.cells[0].label: r.values for r in res.rows}
    assert float(by["满100减20"]["use_rate"]) == pytest.approx(0.25)
    assert by["满100减20"]["issued"] == 4 and by["满100减20"]["used"] == 1
    assert by["八折券"]["issued"] == 1 and by["八折券"]["used"] == 0


def test_member_panel_lists_unused_coupons_with_redeem_links(client, services):
    m, tpl = make_member(services), template(services)
    keep = coupon(services, coupons.issue(services, tpl, m, SYSTEM))["code"]
    used = coupon(services, coupons.issue(services, tpl, m, SYSTEM))["code"]
    coupons.redeem(services, used, SYSTEM, amount="200")
    html = client.get(f"/membership/member/{m}/loyalty-panel").get_data(as_text=True)
    assert f"code={keep}" in html and f"code={used}" not in html and f"/membership/levels/member/{m}" in html
    assert "membership/member/%d/loyalty-panel" % m in client.get(f"/e/membership.member/{m}").get_data(as_text=True)


def test_redeeming_needs_update_access_to_coupons(services):
    from crmkit.runtime.actor import Actor
    from crmkit.runtime.errors import PermissionDenied

    m, tpl = make_member(services), template(services)
    cid = coupons.issue(services, tpl, m, SYSTEM)
    reader = Actor(id=77, username="reader", permissions=frozenset({("read", "entity:membership.coupon"), ("read", "entity:membership.coupon_template")}))
    with pytest.raises(PermissionDenied):
        coupons.redeem(services, coupon(services, cid)["code"], reader, amount="200")
    with pytest.raises(PermissionDenied):
        run_action(services, "membership", "levels.set", reader, {"member": m, "level": None, "reason": "x"})
    assert coupon(services, cid)["status"] == "issued"


def test_front_desk_redeems_once_and_a_used_code_says_why(app, services):
    """The Front Desk role (install's roles) may look up and redeem a code; looking up a used code shows why it cannot
    be redeemed instead of the form, and redeeming it again is refused with that reason."""
    from membership_join_support import people

    from conftest import login
    from org_support import PASSWORD

    front = people(app, services)["front"]
    m, tpl = make_member(services), template(services)
    cid = coupons.issue(services, tpl, m, SYSTEM)
    code = coupon(services, cid)["code"]
    client = app.test_client()
    login(client, "front", PASSWORD)
    with client.session_transaction() as sess:
        sess["locale"] = "en"
    html = client.get(f"/membership/coupons/redeem?code={code}").get_data(as_text=True)
    assert 'data-status="issued"' in html and "data-refusal" not in html and 'id="cpn-amount"' in html
    assert coupons.redeem(services, code, front, amount="150").discount == decimal.Decimal("20.00")
    resp = client.get(f"/membership/coupons/redeem?code={code}")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "data-refusal" in html and "Coupon %s was already used." % code in html
    assert 'id="cpn-amount"' not in html
    with pytest.raises(coupons.CouponRefused, match="already used"):
        coupons.redeem(services, code, front, amount="150")
    assert str(coupon(services, cid)["order_amount"]) == "150.00"


def test_front_desk_cannot_edit_a_coupon_by_hand_but_redeems_and_voids_it(app, services):
    """Every coupon field is read-only for the template's roles: a clerk cannot mark a code used (or unused again) through
    the record form or the API; the redeem and void operations, with their checks and reason, still work for them."""
    from membership_join_support import people

    from conftest import csrf_from, login
    from org_support import PASSWORD

    front = people(app, services)["front"]
    m, tpl = make_member(services), template(services)
    cid, other = coupons.issue(services, tpl, m, SYSTEM), coupons.issue(services, tpl, m, SYSTEM)
    with pytest.raises(ValidationFailed) as refused:
        services.records.update("membership.coupon", cid, {"status": "used", "discount": "20"}, front, expected_version=1)
    assert {"status", "discount"} <= set(refused.value.field_errors)
    client = app.test_client()
    login(client, "front", PASSWORD)
    form = client.get(f"/e/membership.coupon/{cid}/edit").get_data(as_text=True)
    resp = client.post(f"/e/membership.coupon/{cid}/edit", data={"csrf_token": csrf_from(form), "status": "used", "discount": "20", "row_version": "1"})
    assert resp.status_code < 500  # the form ignores read-only fields (or refuses); either way nothing changes:
    assert (coupon(services, cid)["status"], coupon(services, cid)["discount"], coupon(services, cid)["row_version"]) == ("issued", None, 1)

    done = coupons.redeem(services, coupon(services, cid)["code"], front, amount="150")
    assert done.discount == decimal.Decimal("20.00") and coupon(services, cid)["status"] == "used"
    coupons.void(services, other, "顾客退回", front)
    assert (coupon(services, other)["status"], coupon(services, other)["void_reason"]) == ("void", "顾客退回")
    with services.engine.connect() as conn:  # the clerk's name stays on what the operations wrote
        actors = conn.execute(select(pt.audit.c.actor_id).where(pt.audit.c.entity == "membership.coupon", pt.audit.c.record_id.in_((cid, other)),
                                                                pt.audit.c.action == "update")).scalars().all()
    assert actors == [front.id, front.id]
