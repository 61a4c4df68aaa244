"""Member activities: invitations to a segment, registrations, check-in by card or mobile (unknown and duplicate
check-ins refused), activity points through the ledger exactly once, the evaluation against an independent
computation, the activity statistics report, and the roles' grants."""
from __future__ import annotations

import datetime as dt
import decimal

import pytest
from sqlalchemy import select

from crmkit.apps.membership import activities
from crmkit.apps.membership.ledger import tables as lt
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.packages import run_action
from crmkit.runtime.privacy.consent import grant_consent

from activity_support import count_rows, make_activity, make_segment, seed_members
from ledger_support import assert_sound, entry_count, ledger

D = decimal.Decimal


def _members(services, n=6) -> list[dict]:
    out = []
    for i in range(n):
        mid = services.records.create("membership.member", {"name": f"张{i}", "mobile": f"1391111{i:04d}", "joined_on": "2025-01-01"}, SYSTEM)
        out.append(services.queries.get("membership.member", mid, SYSTEM))
    return out


def _reg(services, activity_id, member_id) -> dict:
    rows = services.queries.list(activities.REG, SYSTEM, filter={"field": "reg_key", "op": "eq", "value": f"{activity_id}:{member_id}"},
                                 limit=1, count="none").rows
    return rows[0] if rows else None


def test_invitations_reach_the_segment_once_and_message_only_consenting_members(services):
    levels, members = seed_members(services, 30)
    seg = make_segment(services, {"field": "level", "op": "eq", "value": levels["GOLD"]})
    aid = make_activity(services, segment=seg, channel="sms", invitation="{{ name }}，诚邀参加{{ title }}（{{ starts_at }}）")
    gold = [m for m in members if m["level"] == levels["GOLD"]]
    res = run_action(services, "membership", "activities.invite", SYSTEM, {"activity": aid})
    assert res == {"invited": len(gold), "messaged": sum(m["consent_sms"] for m in gold), "no_consent": sum(not m["consent_sms"] for m in gold),
                   "already": 0}
    assert count_rows(services, activities.REG, activity=aid, status="invited") == len(gold)
    body = services.messaging.deliveries(entity="membership.member", record_id=next(m["id"] for m in gold if m["consent_sms"]))[0]["body"]
    assert "诚邀参加会员沙龙（2026-05-10 14:00）" in body
    again = activities.invite(services, aid, SYSTEM)
    assert again["invited"] == 0 and again["already"] == len(gold)
    assert services.queries.get(activities.ACTIVITY, aid, SYSTEM)["invited_count"] == len(gold)


def test_check_in_by_card_and_by_mobile_and_walk_ins(services):
    ms = _members(services, 3)
    aid = make_activity(services)
    activities.register(services, aid, ms[0]["id"], SYSTEM)
    activities.register(services, aid, ms[1]["id"], SYSTEM)
    a = activities.check_in(services, aid, SYSTEM, card_no=ms[0]["card_no"].lower())
    b = run_action(services, "membership", "activities.check_in", SYSTEM, {"activity": aid, "mobile": ms[1]["mobile"]})
    walk_in = activities.check_in(services, aid, SYSTEM, card_no=ms[2]["card_no"])
    assert (a["member"], a["method"]) == (ms[0]["id"], "card") and (b["member"], b["method"]) == (ms[1]["id"], "mobile")
    r0, r1, r2 = (_reg(services, aid, m["id"]) for m in ms)
    assert r0["status"] == r1["status"] == r2["status"] == "attended"
    assert r0["check_in_method"] == "card" and r1["check_in_method"] == "mobile" and r2["checked_in_at"] is not None
    assert r2["id"] == walk_in["registration"] and r2["registered_at"] is not None
    act = services.queries.get(activities.ACTIVITY, aid, SYSTEM)
    assert act["registered_count"] == 3 and act["attended_count"] == 3 and act["attendance_rate"] == D("1")


def test_unknown_card_and_duplicate_check_in_are_refused_with_clear_errors(services):
    ms = _members(services, 1)
    aid = make_activity(services)
    with pytest.raises(activities.MemberNotFound) as unknown:
        activities.check_in(services, aid, SYSTEM, card_no="VIP99999999")
    assert "VIP99999999" in unknown.value.message and "没有卡号为 VIP99999999 的会员" in unknown.value.message.zh
    with pytest.raises(activities.MemberNotFound):
        activities.check_in(services, aid, SYSTEM, mobile="13000000000")
    with pytest.raises(ValidationFailed):
        activities.check_in(services, aid, SYSTEM)
    assert count_rows(services, activities.REG) == 0
    activities.check_in(services, aid, SYSTEM, mobile=ms[0]["mobile"])
    with pytest.raises(activities.CheckInRefused) as twice:
        activities.check_in(services, aid, SYSTEM, card_no=ms[0]["card_no"])
    assert "already checked in" in twice.value.message and "已签到" in twice.value.message.zh
    assert count_rows(services, activities.REG, activity=aid) == 1
    # a registration for the same member and activity cannot be created another way either
    with pytest.raises(ValidationFailed):
        services.records.create(activities.REG, {"activity": aid, "member": ms[0]["id"], "status": "registered"}, SYSTEM)


def test_activity_points_reach_the_ledger_exactly_once(services):
    ms = _members(services, 4)
    aid = make_activity(services, points=80)
    for m in ms[:3]:
        activities.register(services, aid, m["id"], SYSTEM)
    for m in ms[:2]:
        activities.check_in(services, aid, SYSTEM, card_no=m["card_no"])
    first = run_action(services, "membership", "activities.award_points", SYSTEM, {"activity": aid})
    assert first == {"posted": 2, "already": 0, "refused": 0, "points": 160}
    activities.check_in(services, aid, SYSTEM, card_no=ms[2]["card_no"])  # a late arrival; awarding again adds only theirs
    second = activities.award_points(services, aid, SYSTEM)
    assert second == {"posted": 1, "already": 2, "refused": 0, "points": 80}
    third = activities.award_points(services, aid, SYSTEM)
    assert third["posted"] == 0 and third["already"] == 3
    for m in ms[:3]:
        assert entry_count(services, idempotency_key=activities.points_key(aid, m["id"])) == 1
        assert ledger(services).balances(m["id"])["reward"]["wallet"] == 80
        assert _reg(services, aid, m["id"])["points_awarded"] == 80
    assert ledger(services).balances(ms[3]["id"])["reward"]["wallet"] == 0
    assert services.queries.get(activities.ACTIVITY, aid, SYSTEM)["points_issued"] == 240
    with services.engine.connect() as c:
        kinds = {r.source_type for r in c.execute(select(lt.entry.c.source_type).where(lt.entry.c.idempotency_key.like(f"activity:{aid}:%")))}
    assert kinds == {"activity"}
    assert_sound(services)


def test_awarding_without_points_set_is_refused(services):
    aid = make_activity(services, points=0)
    with pytest.raises(ValidationFailed) as exc:
        activities.award_points(services, aid, SYSTEM)
    assert "points" in exc.value.field_errors


def test_evaluation_matches_an_independent_computation(services):
    ms = _members(services, 5)
    store = services.records.create("membership.store", {"name": "上海店", "code": "SH1"}, SYSTEM)
    start = dt.datetime(2026, 5, 10, 6, 0, tzinfo=dt.timezone.utc)
    aid = make_activity(services, starts_at=start.isoformat(), follow_up_days=10, cost="3000", budget="3500", points=20)
    for m in ms[:4]:
        activities.register(services, aid, m["id"], SYSTEM)
    for m in ms[:3]:
        activities.check_in(services, aid, SYSTEM, card_no=m["card_no"])
    activities.award_points(services, aid, SYSTEM)
    orders = [  # member index, hours after the start, amount, payment status, refunded
        (0, 2, "300.00", "paid", None), (0, 24 * 9, "120.50", "paid", "20.50"), (1, 24 * 11, "999.00", "paid", None),
        (1, -5, "88.00", "paid", None), (2, 30, "200.00", "pending", None), (3, 5, "500.00", "paid", None), (4, 5, "700.00", "paid", None)]
    for idx, hours, amount, status, refunded in orders:
        data = {"member": ms[idx]["id"], "store": store, "kind": "consumption", "amount": amount, "payment_status": status,
                "ordered_at": (start + dt.timedelta(hours=hours)).isoformat()}
        if refunded:
            data["refunded_amount"] = refunded
        services.records.create("membership.order", data, SYSTEM)
    attendees = {0, 1, 2}
    window = [o for o in orders if o[0] in attendees and o[3] == "paid" and 0 <= o[1] < 24 * 10]
    expected_amount = sum(D(o[2]) - D(o[4] or "0") for o in window)
    res = run_action(services, "membership", "activities.evaluate", SYSTEM, {"activity": aid})
    assert res["registered"] == 4 and res["attended"] == 3 and res["invited"] == 0
    assert D(res["attendance_rate"]) == (D(3) / D(4)).quantize(D("0.0001"))
    assert res["points_issued"] == 60 and D(res["cost"]) == D("3000") and D(res["cost_per_attendee"]) == D("1000.00")
    assert res["follow_up_orders"] == len(window) == 2 and D(res["follow_up_amount"]) == expected_amount == D("400.00")
    act = services.queries.get(activities.ACTIVITY, aid, SYSTEM)
    assert act["follow_up_orders"] == 2 and act["follow_up_amount"] == D("400.00") and act["evaluated_at"] is not None
    assert act["attendance_rate"] == D("0.75")


def test_activity_statistics_report_counts_per_activity(services):
    from crmkit.runtime.reports.runner import run_report

    ms = _members(services, 4)
    a = make_activity(services, title="品鉴会", points=10)
    b = make_activity(services, title="亲子日", points=10)
    for m in ms:
        activities.register(services, a, m["id"], SYSTEM)
    for m in ms[:3]:
        activities.check_in(services, a, SYSTEM, card_no=m["card_no"])
    activities.register(services, b, ms[0]["id"], SYSTEM)
    activities.award_points(services, a, SYSTEM)
    res = run_report(services, SYSTEM, services.store.catalog().report("membership.activity_statistics"))
    by = {r.cells[0].label: r.values for r in res.rows}
    assert by["品鉴会"]["registered"] == 4 and by["品鉴会"]["attended"] == 3 and int(by["品鉴会"]["points"]) == 30
    assert float(by["品鉴会"]["attendance_rate"]) == pytest.approx(0.75)
    assert by["亲子日"]["registered"] == 1 and by["亲子日"]["attended"] == 0


def test_roles_grant_activities_to_marketing_and_check_in_to_the_front_desk(app, services):
    from membership_join_support import people

    staff = people(app, services)
    marketing, desk, auditor = staff["marketer"], staff["front"], staff["auditor"]
    catalog = services.store.catalog()
    for ent in ("segment", "care", "activity", "activity_registration"):
        assert services.policy.allows(marketing, catalog.entity(f"membership.{ent}"), "create")
        assert services.policy.allows(auditor, catalog.entity(f"membership.{ent}"), "read")
        assert not services.policy.allows(auditor, catalog.entity(f"membership.{ent}"), "create")
    assert services.policy.allows(desk, catalog.entity(activities.REG), "create")
    assert not services.policy.allows(desk, catalog.entity(activities.ACTIVITY), "update")
    assert not services.policy.allows(desk, catalog.entity("membership.care"), "read")
    ms = _members(services, 1)
    aid = make_activity(services)
    assert activities.check_in(services, aid, desk, card_no=ms[0]["card_no"])["member"] == ms[0]["id"]
    assert _reg(services, aid, ms[0]["id"])["checked_in_by"] == desk.id
    from crmkit.runtime.errors import PermissionDenied

    with pytest.raises(PermissionDenied):  # the desk checks in; awarding is the activity manager's
        activities.award_points(services, aid, desk)
    assert activities.award_points(services, aid, marketing)["posted"] == 1
    assert ledger(services).balances(ms[0]["id"])["reward"]["wallet"] == 50


def test_activity_panel_checks_in_and_shows_errors(client, services, csrf_token):
    ms = _members(services, 1)
    aid = make_activity(services)
    html = client.get(f"/membership/activity/{aid}/panel").get_data(as_text=True)
    assert "签到" in html or "Check in" in html
    ok = client.post(f"/membership/activity/{aid}/check-in", data={"card_no": ms[0]["card_no"], "csrf_token": csrf_token},
                     headers={"HX-Request": "true"})
    assert ok.status_code == 200 and "data-check-in-ok" in ok.get_data(as_text=True)
    again = client.post(f"/membership/activity/{aid}/check-in", data={"card_no": ms[0]["card_no"], "csrf_token": csrf_token})
    assert again.status_code == 409 and "data-check-in-error" in again.get_data(as_text=True)
    unknown = client.post(f"/membership/activity/{aid}/check-in", data={"card_no": "NOPE", "csrf_token": csrf_token})
    assert unknown.status_code == 404 and "NOPE" in unknown.get_data(as_text=True)
    no_csrf = client.post(f"/membership/activity/{aid}/check-in", data={"card_no": ms[0]["card_no"]})
    assert no_csrf.status_code == 400
    assert count_rows(services, activities.REG, activity=aid) == 1


def test_consent_granted_later_lets_the_next_invitation_run_message_new_members_only(services):
    levels, members = seed_members(services, 10)
    seg = make_segment(services, {"field": "level", "op": "eq", "value": levels["SILVER"]})
    aid = make_activity(services, segment=seg, invitation="邀请 {{ name }}")
    activities.invite(services, aid, SYSTEM)
    new = services.records.create("membership.member", {"name": "新会员", "mobile": "13912340000", "joined_on": "2026-01-01",
                                                         "level": levels["SILVER"]}, SYSTEM)
    grant_consent(services, "membership.member", new, {"channel": "sms", "purpose": "活动", "version": "1"}, SYSTEM)
    res = activities.invite(services, aid, SYSTEM)
    assert res["invited"] == 1 and res["messaged"] == 1
