"""Member levels: automatic upgrade on orders, period-end downgrade, manual change with a reason, history rows, idempotency."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from crmkit.apps.membership import levels
from crmkit.apps.membership.ledger import LedgerService
from crmkit.apps.membership.loyalty_hooks import period_end_job
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.packages import run_action

from ledger_support import make_member, make_plan


@pytest.fixture
def tiers(services):
    mk = lambda **f: services.records.create("membership.level", f, SYSTEM)  # noqa: E731
    return {"basic": mk(name="普通", code="BASIC", level_value=1),
            "silver": mk(name="银卡", code="SILVER", level_value=2, upgrade_points=500),
            "gold": mk(name="金卡", code="GOLD", level_value=3, upgrade_points=2000, min_spend="1000"),
            "vip": mk(name="黑钻", code="VIP", level_value=4, min_referrals=2)}


def level_of(services, m) -> int | None:
    return services.queries.get("membership.member", m, SYSTEM)["level"]


def history(services, m) -> list[dict]:
    return services.queries.list("membership.level_change", SYSTEM, filter={"field": "member", "op": "eq", "value": m}, sort=["id"],
                                 labels=False, limit=100).rows


def upgrade(services, m, points, key):
    LedgerService(services.engine).earn(m, points, key=key, actor=SYSTEM, currency="upgrade")


def test_target_level_needs_every_threshold_the_level_sets():
    lv = [levels.Level(1, "a", 1, None, None, None), levels.Level(2, "b", 2, 100, None, None),
          levels.Level(3, "c", 3, 100, levels.D(500), None)]
    assert levels.target_level(lv, levels.Metrics(150, levels.D(499), 0)).id == 2
    assert levels.target_level(lv, levels.Metrics(150, levels.D(500), 0)).id == 3
    assert levels.target_level(lv, levels.Metrics(0, levels.D(0), 0)).id == 1
    assert levels.target_level(lv[1:], levels.Metrics(0, levels.D(0), 0)) is None


def test_an_order_that_earns_upgrade_points_upgrades_the_member_in_its_transaction(services, tiers):
    make_plan(services, upgrade_per_yuan="1")
    m = make_member(services, level=tiers["basic"])
    services.records.create("membership.order", {"member": m, "amount": "600", "ordered_at": "2026-03-01T10:00:00+08:00"}, SYSTEM)
    assert level_of(services, m) == tiers["silver"]
    rows = history(services, m)
    assert len(rows) == 1 and rows[0]["from_level"] == tiers["basic"] and rows[0]["to_level"] == tiers["silver"]
    assert rows[0]["source"] == "auto" and rows[0]["direction"] == "up" and "upgrade points 600" in rows[0]["reason"]
    services.records.create("membership.order", {"member": m, "amount": "10", "ordered_at": "2026-03-02T10:00:00+08:00"}, SYSTEM)
    assert len(history(services, m)) == 1  # still silver: nothing written


def test_gold_needs_points_and_spend(services, tiers):
    make_plan(services, upgrade_per_yuan="3")
    m = make_member(services, level=tiers["basic"])
    services.records.create("membership.order", {"member": m, "amount": "700", "ordered_at": "2026-03-01T10:00:00+08:00"}, SYSTEM)
    assert level_of(services, m) == tiers["silver"]  # 2100 points but spend 700 < 1000
    services.records.create("membership.order", {"member": m, "amount": "300", "ordered_at": "2026-03-02T10:00:00+08:00"}, SYSTEM)
    assert level_of(services, m) == tiers["gold"]
    assert [h["to_level"] for h in history(services, m)] == [tiers["silver"], tiers["gold"]]


def test_referrals_count_towards_a_level(services, tiers):
    m = make_member(services, level=tiers["basic"])
    for i in range(2):
        services.records.create("membership.member", {"name": f"朋友{i}", "mobile": f"1350000000{i}", "joined_on": "2026-02-01",
                                                      "join_channel": "referral", "referred_by": m}, SYSTEM)
    assert levels.evaluate(services, m) == tiers["vip"]


def test_period_end_downgrades_and_reevaluation_is_idempotent(services, tiers):
    m = make_member(services, level=tiers["basic"])
    upgrade(services, m, 600, "u1")
    run_action(services, "membership", "levels.evaluate", SYSTEM, {"member": m, "allow_down": False})
    assert level_of(services, m) == tiers["silver"]
    LedgerService(services.engine).request_adjustment(m, -300, "年度清零", actor=SYSTEM, currency="upgrade")
    assert levels.evaluate(services, m, allow_down=False) is None and level_of(services, m) == tiers["silver"]  # no downgrade mid-period
    res = levels.evaluate_all(services)
    assert res["changed"] == 1 and level_of(services, m) == tiers["basic"]
    assert history(services, m)[-1]["direction"] == "down"
    before = len(history(services, m))
    assert levels.evaluate_all(services)["changed"] == 0 and len(history(services, m)) == before


def test_manual_change_needs_a_reason_and_is_kept_in_history(services, tiers):
    m = make_member(services, level=tiers["basic"])
    with pytest.raises(ValidationFailed) as err:
        run_action(services, "membership", "levels.set", SYSTEM, {"member": m, "level": tiers["gold"], "reason": "  "})
    assert "reason" in err.value.field_errors and level_of(services, m) == tiers["basic"] and history(services, m) == []
    assert run_action(services, "membership", "levels.set", SYSTEM, {"member": m, "level": tiers["gold"], "reason": "大客户特批"}) == {"changed": True}
    assert run_action(services, "membership", "levels.set", SYSTEM, {"member": m, "level": tiers["gold"], "reason": "再次"}) == {"changed": False}
    rows = history(services, m)
    assert len(rows) == 1 and rows[0]["source"] == "manual" and rows[0]["reason"] == "大客户特批" and rows[0]["direction"] == "up"
    assert level_of(services, m) == tiers["gold"]
    assert levels.evaluate(services, m, allow_down=False) is None  # the manual level holds until the period ends


def test_upgrade_point_adjustment_action_upgrades(services, tiers):
    m = make_member(services, level=tiers["basic"])
    run_action(services, "membership", "points.adjust", SYSTEM, {"member": m, "points": 800, "reason": "活动奖励", "currency": "upgrade"})
    assert level_of(services, m) == tiers["silver"]


def test_period_end_job_runs_only_after_a_plan_ended(services, tiers):
    make_plan(services)  # ends 2026-12-31
    m = make_member(services, level=tiers["gold"])

    class Ctx:
        def __init__(self):
            self.services = services

        def progress(self, *a):
            pass

    assert "skipped" in period_end_job(Ctx(), {"period_end_only": True, "now": "2026-06-01T02:00:00+00:00"})
    assert level_of(services, m) == tiers["gold"]
    res = period_end_job(Ctx(), {"period_end_only": True, "now": "2027-01-01T02:00:00+00:00"})  # 10:00 on 1 Jan, China time
    assert res["changed"] == 1 and level_of(services, m) == tiers["basic"]


def test_member_level_page_changes_level_with_reason(client, services, tiers, csrf_token):
    m = make_member(services, level=tiers["basic"])
    bad = client.post(f"/membership/levels/member/{m}", data={"csrf_token": csrf_token, "level": tiers["silver"], "reason": ""})
    assert bad.status_code == 422 and level_of(services, m) == tiers["basic"]
    ok = client.post(f"/membership/levels/member/{m}", data={"csrf_token": csrf_token, "level": tiers["silver"], "reason": "门店经理审批"})
    assert ok.status_code == 302 and level_of(services, m) == tiers["silver"]
    page = client.get(f"/membership/levels/member/{m}").get_data(as_text=True)
    assert "门店经理审批" in page and "银卡" in page


def test_level_change_count_matches_changes(services, tiers):
    m = make_member(services, level=tiers["basic"])
    upgrade(services, m, 2500, "big")
    levels.evaluate(services, m)
    t = services.records.table_cache.tables(services.store.catalog())["membership.level_change"]
    with services.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(t)).scalar_one() == 1
    assert level_of(services, m) == tiers["silver"]  # gold needs spend 1000 too
    assert dt.datetime.now(dt.timezone.utc) - history(services, m)[0]["changed_at"] < dt.timedelta(minutes=5)


def test_level_changes_report_counts_moves_into_each_level(services, tiers):
    from crmkit.runtime.reports.runner import run_report

    for i in range(3):
        m = make_member(services, name=f"会员{i}", mobile=f"1380000000{i}", level=tiers["basic"])
        levels.set_level(services, m, tiers["silver"] if i else tiers["gold"], "测试", SYSTEM)
    res = run_report(services, SYSTEM, services.store.catalog().report("membership.level_changes_by_month"), expand=True)
    assert sum(r.values["changes"] for r in res.rows) == 3
    assert {str(c.label) for c in res.columns} >= {"银卡", "金卡"}


def test_upgrade_points_posted_on_the_points_desk_upgrade(client, services, tiers, csrf_token):
    m = make_member(services, level=tiers["basic"])
    resp = client.post(f"/membership/points/member/{m}/adjust", data={"csrf_token": csrf_token, "points": "700", "currency": "upgrade",
                                                                      "reason": "活动补录"})
    assert resp.status_code == 302 and level_of(services, m) == tiers["silver"]
