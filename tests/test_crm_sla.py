"""The SLA engine under business hours, holidays, 调休 working days and pauses, with a controllable clock;
and the ticket refresh job that records each breach once."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from crm_support import crm  # noqa: F401
from crmkit.apps.crm.calendar import BusinessCalendar, load_calendar
from crmkit.apps.crm.sla import AT_RISK, BREACHED, MET, ON_TRACK, PAUSED, TicketClock, Targets, overall, pause_transition, ticket_states
from crmkit.apps.crm.tickets import refresh_sla
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed

SH = ZoneInfo("Asia/Shanghai")
at = lambda *a: dt.datetime(*a, tzinfo=SH)
CAL = load_calendar()


def test_working_minutes_skip_lunch_nights_and_weekends():
    assert CAL.minutes_between(at(2026, 3, 2, 9), at(2026, 3, 2, 18)) == 8 * 60  # Monday: 9–12 + 13–18
    assert CAL.minutes_between(at(2026, 3, 6, 17), at(2026, 3, 9, 10)) == 120  # Fri 17–18 + Mon 9–10
    assert CAL.add_minutes(at(2026, 3, 6, 17, 30), 60) == at(2026, 3, 9, 9, 30)
    assert CAL.add_minutes(at(2026, 3, 2, 11, 30), 60) == at(2026, 3, 2, 13, 30)  # lunch does not count
    assert CAL.add_minutes(at(2026, 3, 2, 20), 0) == at(2026, 3, 3, 9)  # opened at night: the clock starts next morning


def test_holidays_and_adjusted_working_days():
    # National Day: 1–7 October off; Saturday 10 October is a working day (调休); Sunday 20 September too.
    assert not CAL.is_working_day(dt.date(2026, 10, 5))
    assert CAL.is_working_day(dt.date(2026, 10, 10)) and CAL.is_working_day(dt.date(2026, 9, 20))
    assert CAL.add_minutes(at(2026, 9, 30, 17), 2 * 60) == at(2026, 10, 8, 10)
    # Friday 9 Oct 17:00 + 2h: the working Saturday 10 Oct comes before Monday
    assert CAL.add_minutes(at(2026, 10, 9, 17), 2 * 60) == at(2026, 10, 10, 10)
    # Spring Festival 15–23 Feb off; Saturday 14 Feb worked
    assert CAL.add_minutes(at(2026, 2, 13, 17), 120) == at(2026, 2, 14, 10)
    assert CAL.add_minutes(at(2026, 2, 14, 17), 120) == at(2026, 2, 24, 10)
    assert CAL.minutes_between(at(2026, 2, 14, 0), at(2026, 2, 24, 0)) == 8 * 60


def test_a_calendar_is_plain_data():
    cal = BusinessCalendar.from_dict({"timezone": "UTC", "hours": {"mon": [["08:00", "10:00"]]}, "holidays": ["2026-03-02"]})
    utc = dt.timezone.utc
    assert cal.add_minutes(dt.datetime(2026, 3, 1, tzinfo=utc), 30) == dt.datetime(2026, 3, 9, 8, 30, tzinfo=utc)
    with pytest.raises(ValueError):
        BusinessCalendar.from_dict({"hours": {"mon": [["10:00", "09:00"]]}})


def test_pauses_stop_the_clock_and_move_the_due_time():
    targets = Targets(first_response=60, resolution=4 * 60)
    opened = at(2026, 3, 2, 9)
    clock = TicketClock(opened_at=opened, first_responded_at=at(2026, 3, 2, 9, 30))
    states = ticket_states(CAL, clock, targets, at(2026, 3, 2, 11))
    assert [s.state for s in states] == [MET, ON_TRACK] and states[1].due == at(2026, 3, 2, 14)
    assert ticket_states(CAL, clock, targets, at(2026, 3, 2, 13, 20))[1].state == AT_RISK  # 200 of 240 minutes used
    # waiting on the customer from 10:00 until the next morning 10:00
    paused = pause_transition(CAL, clock, "open", "waiting_on_customer", at(2026, 3, 2, 10))
    assert ticket_states(CAL, paused, targets, at(2026, 3, 2, 17))[1].state == PAUSED
    resumed = pause_transition(CAL, paused, "waiting_on_customer", "open", at(2026, 3, 3, 10))
    assert resumed.paused_minutes == 8 * 60 and resumed.paused_since is None
    state = ticket_states(CAL, resumed, targets, at(2026, 3, 3, 10))[1]
    assert state.elapsed == 60 and state.due == at(2026, 3, 3, 14) and state.state == ON_TRACK
    late = ticket_states(CAL, resumed, targets, at(2026, 3, 3, 14, 1))
    assert late[1].state == BREACHED and overall(late) == BREACHED


def ticket(crm, **data):
    body = {"subject": "发票抬头需要修改", "priority": "high", "category": "billing", **data}
    tid = crm.records.create("crm_service.ticket", body, SYSTEM)
    return crm.queries.get("crm_service.ticket", tid, SYSTEM)


def test_ticket_due_times_follow_the_policy_and_breach_is_recorded_once(crm):
    crm.records.create("crm_service.sla_policy", {"name": "高-账单", "priority": "high", "category": "billing", "first_response_minutes": 60, "resolution_minutes": 240}, SYSTEM)
    crm.records.create("crm_service.sla_policy", {"name": "高", "priority": "high", "first_response_minutes": 120, "resolution_minutes": 480}, SYSTEM)
    t = ticket(crm, opened_at=at(2026, 3, 6, 17).isoformat(), sla_checked_at=at(2026, 3, 6, 17).isoformat())
    assert t["first_response_due"] == at(2026, 3, 6, 18).astimezone(dt.timezone.utc)  # Friday 17:00 + 60 working minutes
    assert t["resolution_due"] == at(2026, 3, 9, 12).astimezone(dt.timezone.utc)
    assert t["sla_state"] == ON_TRACK
    other = ticket(crm, category="delivery", opened_at=at(2026, 3, 6, 17).isoformat(), sla_checked_at=at(2026, 3, 6, 17).isoformat())
    assert other["first_response_due"] == at(2026, 3, 9, 10).astimezone(dt.timezone.utc)  # the policy for any category

    assert refresh_sla(crm, at(2026, 3, 6, 17, 30)) == {"refreshed": 2, "breaches": 0}
    assert crm.queries.get("crm_service.ticket", t["id"], SYSTEM)["sla_state"] == ON_TRACK
    refresh_sla(crm, at(2026, 3, 6, 17, 50))
    assert crm.queries.get("crm_service.ticket", t["id"], SYSTEM)["sla_state"] == AT_RISK  # 50 of 60 minutes
    result = refresh_sla(crm, at(2026, 3, 9, 9, 50))
    assert result["breaches"] == 1  # the first response of the billing ticket
    assert crm.queries.get("crm_service.ticket", t["id"], SYSTEM)["sla_state"] == BREACHED
    assert crm.queries.get("crm_service.ticket", other["id"], SYSTEM)["sla_state"] == AT_RISK
    assert refresh_sla(crm, at(2026, 3, 9, 9, 55))["breaches"] == 0  # recorded once
    assert refresh_sla(crm, at(2026, 3, 9, 13))["breaches"] == 2  # billing resolution (Mon 12:00), other first response (Mon 10:00)
    assert refresh_sla(crm, at(2026, 3, 9, 17, 30))["breaches"] == 1  # other resolution (Mon 17:00)
    breaches = crm.queries.list("crm_service.sla_breach", SYSTEM, sort=["key"], limit=50).rows
    assert sorted(b["key"] for b in breaches) == sorted([f"{t['id']}:first_response", f"{t['id']}:resolution",
                                                         f"{other['id']}:first_response", f"{other['id']}:resolution"])
    assert refresh_sla(crm, at(2026, 3, 10, 9))["breaches"] == 0


def test_waiting_on_customer_pauses_a_ticket(crm):
    crm.records.create("crm_service.sla_policy", {"name": "普通", "priority": "normal", "first_response_minutes": 60, "resolution_minutes": 240}, SYSTEM)
    t = ticket(crm, priority="normal", opened_at=at(2026, 3, 2, 9).isoformat(), sla_checked_at=at(2026, 3, 2, 9).isoformat())
    v = crm.records.update("crm_service.ticket", t["id"], {"status": "waiting_on_customer", "sla_checked_at": at(2026, 3, 2, 10).isoformat()}, SYSTEM,
                           expected_version=t["row_version"])
    t = crm.queries.get("crm_service.ticket", t["id"], SYSTEM)
    assert t["sla_state"] == PAUSED and t["resolution_due"] is None and t["first_responded_at"] == at(2026, 3, 2, 10).astimezone(dt.timezone.utc)
    crm.records.update("crm_service.ticket", t["id"], {"status": "open", "sla_checked_at": at(2026, 3, 3, 10).isoformat()}, SYSTEM, expected_version=v)
    t = crm.queries.get("crm_service.ticket", t["id"], SYSTEM)
    assert t["paused_minutes"] == 480 and t["resolution_due"] == at(2026, 3, 3, 14).astimezone(dt.timezone.utc)


def test_a_complaint_needs_root_cause_and_follow_up_to_be_resolved(crm):
    t = ticket(crm, kind="complaint")
    with pytest.raises(ValidationFailed) as exc:
        crm.records.update("crm_service.ticket", t["id"], {"status": "resolved"}, SYSTEM, expected_version=t["row_version"])
    assert set(exc.value.field_errors) == {"root_cause", "follow_up"}
    assert crm.queries.get("crm_service.ticket", t["id"], SYSTEM)["status"] == "new"
    crm.records.update("crm_service.ticket", t["id"], {"status": "resolved", "root_cause": "发货前未质检", "follow_up": "增加质检"}, SYSTEM,
                       expected_version=t["row_version"])
    assert crm.queries.get("crm_service.ticket", t["id"], SYSTEM)["resolved_at"] is not None
