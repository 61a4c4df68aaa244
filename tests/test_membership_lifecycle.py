"""Member lifecycle: stages at the threshold edges with a fixed clock, parameters from the lifecycle settings record,
the daily refresh writing only changed members (audited), immediate updates on orders, and the three shipped coupon
automations firing once per member and occurrence."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from crmkit.apps.membership import lifecycle
from crmkit.apps.membership.lifecycle import Facts, Thresholds, stage
from crmkit.apps.membership.lifecycle_hooks import REFRESH_JOB
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.storage import platform_tables as pt

from automation_support import dispatch, runs

MEMBER, ORDER, COUPON = "membership.member", "membership.order", "membership.coupon"
TH = Thresholds(new_days=30, dormant_days=30, churn_days=180)
CN = dt.timezone(dt.timedelta(hours=8))
TODAY = dt.datetime.now(CN).date()


def at_noon(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(12), CN)


def member(services, n: int, joined: dt.date, **extra) -> int:
    data = {"name": f"会员{n}", "mobile": f"1380000{n:04d}", "joined_on": joined.isoformat(), **extra}
    return services.records.create(MEMBER, data, SYSTEM)


def order(services, m: int, day: dt.date, amount="100.00", status="paid") -> int:
    return services.records.create(ORDER, {"member": m, "amount": amount, "payment_status": status, "ordered_at": at_noon(day).isoformat()}, SYSTEM)


def get(services, m: int) -> dict:
    return services.queries.get(MEMBER, m, SYSTEM)


def settings(services, **fields) -> int:
    return services.records.create(lifecycle.SETTING, {"name": "默认参数", "new_days": 30, "dormant_days": 30, "churn_days": 180, **fields}, SYSTEM)


def template(services, code: str) -> int:
    return services.records.create("membership.coupon_template", {"name": f"券{code}", "code": code, "kind": "amount", "amount": "10",
                                                                   "validity": "days", "valid_days": 30}, SYSTEM)


def coupons_of(services, m: int) -> list[dict]:
    return services.queries.list(COUPON, SYSTEM, filter={"field": "member", "op": "eq", "value": m}, labels=False, count="none").rows


D = dt.date(2026, 6, 1)


@pytest.mark.parametrize("joined, last, want", [
    (D - dt.timedelta(days=5), None, "prospect"),                   # joined, no purchase yet
    (D - dt.timedelta(days=179), None, "prospect"),                 # one day short of churn, never bought
    (D - dt.timedelta(days=180), None, "churned"),                  # churn_days since joining without a purchase
    (D + dt.timedelta(days=1), None, "prospect"),                   # joins tomorrow
    (D - dt.timedelta(days=29), D - dt.timedelta(days=1), "new"),   # joined 29 days ago, bought
    (D - dt.timedelta(days=30), D - dt.timedelta(days=1), "active"),  # new period over at exactly new_days
    (D - dt.timedelta(days=400), D - dt.timedelta(days=29), "active"),
    (D - dt.timedelta(days=400), D - dt.timedelta(days=30), "dormant"),  # dormant at exactly dormant_days
    (D - dt.timedelta(days=400), D - dt.timedelta(days=179), "dormant"),
    (D - dt.timedelta(days=400), D - dt.timedelta(days=180), "churned"),  # churned at exactly churn_days
    (D - dt.timedelta(days=10), D - dt.timedelta(days=30), "dormant"),  # a new member who stopped buying is dormant, not new
])
def test_stage_at_threshold_edges(joined, last, want):
    assert stage(joined, last, D, TH) == want


def test_rfm_bands_and_age_band_edges():
    assert lifecycle.rfm(Facts(), D)["rfm_segment"] == "no_purchase"
    top = lifecycle.rfm(Facts(D - dt.timedelta(days=60), 6, lifecycle.decimal.Decimal("5000")), D)
    assert (top["rfm_r"], top["rfm_f"], top["rfm_m"], top["rfm_segment"]) == (4, 4, 4, "champion")
    edge = lifecycle.rfm(Facts(D - dt.timedelta(days=61), 5, lifecycle.decimal.Decimal("4999.99")), D)
    assert (edge["rfm_r"], edge["rfm_f"], edge["rfm_m"], edge["rfm_segment"]) == (3, 3, 3, "loyal")
    assert lifecycle.rfm(Facts(D - dt.timedelta(days=181), 1, lifecycle.decimal.Decimal("100")), D)["rfm_segment"] == "hibernating"
    assert lifecycle.age_band(dt.date(2001, 6, 2), D) == "under_25" and lifecycle.age_band(dt.date(2001, 6, 1), D) == "25_34"
    assert lifecycle.age_band(dt.date(1971, 6, 1), D) == "55_plus" and lifecycle.age_band(None, D) is None


def test_daily_refresh_uses_the_clock_and_the_parameters_and_writes_only_changed_members(services):
    joined = TODAY - dt.timedelta(days=300)
    a, b, c = (member(services, i, joined) for i in range(3))
    order(services, a, TODAY - dt.timedelta(days=5))
    order(services, b, TODAY - dt.timedelta(days=20))
    assert [get(services, m)["lifecycle_stage"] for m in (a, b, c)] == ["active", "active", None]  # orders update at once
    first = lifecycle.refresh_all(services, at_noon(TODAY))
    assert first["changed"] == 1 and first["stages"] == {"prospect": 0, "new": 0, "active": 2, "dormant": 0, "churned": 1}
    assert get(services, c)["lifecycle_stage"] == "churned" and get(services, c)["rfm_segment"] == "no_purchase"
    with services.engine.connect() as conn:
        before = conn.execute(select(func.max(pt.audit.c.id))).scalar_one()
    assert lifecycle.refresh_all(services, at_noon(TODAY))["changed"] == 0  # nothing moved: nothing written
    later = lifecycle.refresh_all(services, at_noon(TODAY + dt.timedelta(days=10)))  # b is 30 days past its purchase now
    assert later["changed"] == 1  # only b: a is still active with the same scores, c was churned already
    assert [get(services, m)["lifecycle_stage"] for m in (a, b, c)] == ["active", "dormant", "churned"]
    with services.engine.connect() as conn:
        audited = conn.execute(select(pt.audit.c.record_id, pt.audit.c.changes).where(pt.audit.c.id > before, pt.audit.c.entity == MEMBER)).all()
    assert {r.record_id for r in audited} == {b}
    assert [r.changes for r in audited if r.record_id == b][0]["lifecycle_stage"] is not None
    assert lifecycle.refresh_all(services, at_noon(TODAY + dt.timedelta(days=10)))["changed"] == 0  # a re-run changes nothing

    settings(services, dormant_days=45)  # administrators move the threshold: b is active again at the next run
    assert lifecycle.refresh_all(services, at_noon(TODAY + dt.timedelta(days=10)))["changed"] == 1
    assert get(services, b)["lifecycle_stage"] == "active"


def test_the_refresh_is_a_scheduled_job_of_the_app(services):
    from crmkit.runtime.packages import get_package

    job = [j for j in get_package("membership").hooks.jobs if j.kind == REFRESH_JOB][0]
    assert job.schedule is not None
    m = member(services, 1, TODAY - dt.timedelta(days=5))

    class Ctx:
        def __init__(self):
            self.services = services

        def progress(self, *a):
            pass

    res = job.handler(Ctx(), {"now": at_noon(TODAY + dt.timedelta(days=200)).isoformat()})
    assert res["members"]["changed"] == 1 and get(services, m)["lifecycle_stage"] == "churned"


def test_an_order_updates_the_stage_and_scores_at_once_and_a_refund_counts_net(services):
    m = member(services, 1, TODAY - dt.timedelta(days=100), birthday="1990-01-15", gender="female")
    lifecycle.refresh_all(services)
    row = get(services, m)
    assert row["lifecycle_stage"] == "prospect" and row["age_band"] in ("25_34", "35_44") and row["last_purchase_on"] is None
    oid = order(services, m, TODAY, amount="600.00")
    row = get(services, m)
    assert row["lifecycle_stage"] == "active" and row["last_purchase_on"] == TODAY and row["orders_12m"] == 1
    assert str(row["spend_12m"]) == "600.00" and row["rfm_m"] == 2 and row["rfm_segment"] == "promising"
    services.records.update(ORDER, oid, {"refunded_amount": "200.00"}, SYSTEM, expected_version=services.queries.get(ORDER, oid, SYSTEM)["row_version"])
    assert str(get(services, m)["spend_12m"]) == "400.00" and get(services, m)["rfm_m"] == 1
    pending = order(services, m, TODAY, status="pending")  # an unpaid order is not a purchase yet
    assert get(services, m)["orders_12m"] == 1 and pending


def test_lifecycle_fields_are_read_only_for_users(services):
    from crmkit.runtime.actor import Actor

    m = member(services, 1, TODAY)
    clerk = Actor(id=None, username="clerk", is_admin=True)
    version = get(services, m)["row_version"]
    with pytest.raises(ValidationFailed) as err:
        services.records.update(MEMBER, m, {"lifecycle_stage": "active", "rfm_r": 5}, clerk, expected_version=version)
    assert {"lifecycle_stage", "rfm_r"} <= set(err.value.field_errors)
    assert get(services, m)["lifecycle_stage"] is None and get(services, m)["rfm_r"] is None


def test_bad_thresholds_are_refused_and_nothing_is_stored(services):
    with pytest.raises(ValidationFailed) as err:
        settings(services, dormant_days=60, churn_days=60)
    assert "churn_days" in err.value.field_errors
    with pytest.raises(ValidationFailed):
        settings(services, new_days=0)
    assert services.queries.list(lifecycle.SETTING, SYSTEM, count="none").rows == []


# --- the three shipped automations ------------------------------------------------------------------------------------
def test_welcome_coupon_once_per_member_within_72_hours(services):
    tpl = template(services, "WELCOME")
    settings(services, welcome_coupon=tpl)
    fresh = member(services, 1, TODAY - dt.timedelta(days=2))
    old = member(services, 2, TODAY - dt.timedelta(days=10))
    dispatch(services)
    got = coupons_of(services, fresh)
    assert len(got) == 1 and got[0]["template"] == tpl and got[0]["source"] == "automation" and coupons_of(services, old) == []
    a = services.automations.get("membership.member:welcome")
    services.automations.run_one(a, fresh, "event:replayed", now=dt.datetime.now(dt.timezone.utc))  # a replay: a new run, no new coupon
    dispatch(services)
    assert len(coupons_of(services, fresh)) == 1
    assert [r["status"] for r in runs(services, "membership.member:welcome") if r["record_id"] == fresh] == ["succeeded", "succeeded"]


def test_welcome_without_a_coupon_template_still_greets(services):
    m = member(services, 1, TODAY)
    dispatch(services)
    run = [r for r in runs(services, "membership.member:welcome") if r["record_id"] == m][0]
    assert run["status"] == "succeeded" and "skipped" in str(run["result"]["actions"][0]) and coupons_of(services, m) == []


def test_wakeup_coupon_thirty_days_after_the_last_purchase_once_per_lapse(services):
    tpl = template(services, "WAKEUP")
    settings(services, wakeup_coupon=tpl)
    last = TODAY - dt.timedelta(days=40)
    m = member(services, 1, TODAY - dt.timedelta(days=300))
    keep = member(services, 2, TODAY - dt.timedelta(days=300))
    order(services, m, last)
    order(services, keep, last + dt.timedelta(days=5))
    auto = services.automations
    assert auto.run_dates(at_noon(last + dt.timedelta(days=29)))["membership.member:wakeup"] == 0
    due = at_noon(last + dt.timedelta(days=30))
    assert auto.run_dates(due)["membership.member:wakeup"] == 1
    assert auto.run_dates(due)["membership.member:wakeup"] == 0  # same day again: nothing
    a = auto.get("membership.member:wakeup")
    auto.run_one(a, m, "date:retry", now=due)  # even a second run for the same lapse issues no second coupon
    assert len(coupons_of(services, m)) == 1 and coupons_of(services, keep) == []
    assert auto.run_dates(at_noon(last + dt.timedelta(days=31)))["membership.member:wakeup"] == 0
    # The member comes back and lapses again: a new occurrence, a second coupon.
    again = TODAY - dt.timedelta(days=5)
    order(services, m, again)
    assert auto.run_dates(at_noon(again + dt.timedelta(days=30)))["membership.member:wakeup"] == 1
    assert sorted(c["issue_key"] for c in coupons_of(services, m)) == [f"lifecycle:wakeup:{m}:{last}", f"lifecycle:wakeup:{m}:{again}"]


def test_birthday_benefit_once_per_member_per_year(services):
    tpl = template(services, "BDAY")
    settings(services, birthday_coupon=tpl)
    may = member(services, 1, dt.date(2025, 1, 1), birthday="1990-05-20")
    june = member(services, 2, dt.date(2025, 1, 1), birthday="1990-06-20")
    auto = services.automations
    first = dt.datetime(2026, 5, 1, 1, 0, tzinfo=CN)
    assert auto.run_dates(first)["membership.member:birthday_greeting"] == 1
    auto.run_dates(first)
    auto.run_dates(dt.datetime(2026, 5, 20, 1, 0, tzinfo=CN))  # later in the month: same occurrence
    auto.run_one(auto.get("membership.member:birthday_greeting"), may, "month:2026-05-again", now=first)  # a forced re-run
    assert len(coupons_of(services, may)) == 1 and coupons_of(services, june) == []
    auto.run_dates(dt.datetime(2027, 5, 1, 1, 0, tzinfo=CN))
    assert sorted(c["issue_key"] for c in coupons_of(services, may)) == [f"lifecycle:birthday:{may}:2026", f"lifecycle:birthday:{may}:2027"]


def test_coupon_action_refuses_bad_input(services):
    from crmkit.runtime.packages import run_action

    m = member(services, 1, TODAY)
    with pytest.raises(ValidationFailed):
        run_action(services, "membership", "lifecycle.coupon", SYSTEM, {"member": m, "coupon": "jackpot", "occurrence": "x"})
    with pytest.raises(ValidationFailed):
        run_action(services, "membership", "lifecycle.coupon", SYSTEM, {"member": m, "coupon": "welcome"})
    assert coupons_of(services, m) == []
