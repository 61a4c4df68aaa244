"""The CRM's shipped automations with a controllable clock: the SLA at-risk warning, breach escalation
(reassign + notify the managers, once per breach), the survey link on resolution (a working token link; no
consent → refused and logged) and the activity reminder."""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select

from automation_support import deliveries, dispatch, runs
from conftest import csrf_from, make_settings
from core_support import build_services
from crmkit.apps.crm.tickets import refresh_sla
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.config import ConfigError, Settings
from crmkit.runtime.permissions.admin import ensure_role
from crmkit.runtime.db import write_transaction
from crmkit.runtime.events import Event
from crmkit.runtime.installer import install
from crmkit.runtime.org.tables import ab_user, ab_user_role, user_org
from crmkit.runtime.privacy.consent import grant_consent
from crmkit.runtime.storage import platform_tables as pt
from crmkit.runtime.workflow.people import set_unit_managers

SH = ZoneInfo("Asia/Shanghai")
at = lambda *a: dt.datetime(*a, tzinfo=SH)  # noqa: E731
TICKET, BREACH, ACTIVITY = "crm_service.ticket", "crm_service.sla_breach", "crm.activity"
AT_RISK, ESCALATE, SURVEY, REMIND = (f"{TICKET}:sla_at_risk", f"{BREACH}:escalate", f"{TICKET}:survey_on_resolution", f"{ACTIVITY}:reminder")
BASE = "https://crm.example.cn"


@pytest.fixture
def svc(databases, tmp_path_factory):
    s = build_services(databases.fresh("base"), tmp_path_factory.mktemp("var"))
    install(s, "crm_service")
    yield s
    s.engine.dispose()


def add_unit(s, code: str, parent: int | None = None) -> int:
    with write_transaction(s.engine) as conn:
        uid = conn.execute(pt.org_unit.insert().values(name=code, code=code, kind="department", path="/", parent_id=parent)).inserted_primary_key[0]
        parent_path = conn.execute(select(pt.org_unit.c.path).where(pt.org_unit.c.id == parent)).scalar() if parent else "/"
        conn.execute(pt.org_unit.update().where(pt.org_unit.c.id == uid).values(path=f"{parent_path}{uid}/"))
    return uid


def add_user(s, name: str, unit: int | None) -> int:
    with write_transaction(s.engine) as conn:
        uid = conn.execute(insert(ab_user).values(username=name, first_name=name, last_name="x", email=f"{name}@example.com", active=True)).inserted_primary_key[0]
        if unit:
            conn.execute(insert(user_org).values(user_id=uid, org_unit_id=unit))
    return uid


def make_manager(s, unit: int, uid: int) -> None:
    with write_transaction(s.engine) as conn:
        set_unit_managers(conn, unit, [uid])


def policy(s) -> None:
    s.records.create("crm_service.sla_policy", {"name": "高", "priority": "high", "first_response_minutes": 60, "resolution_minutes": 240}, SYSTEM)


def ticket(s, opened: dt.datetime, **data) -> int:
    body = {"subject": "发票抬头需要修改", "priority": "high", "category": "billing", "opened_at": opened.isoformat(), "sla_checked_at": opened.isoformat(), **data}
    return s.records.create(TICKET, body, SYSTEM)


def in_app_to(s) -> list[int]:
    return [int(d["recipient"]) for d in deliveries(s, "in_app")]


def replay(s, entity: str, record_id: int, topic: str) -> None:
    """Hand the record's events to the automations again, as a re-delivering outbox would."""
    with s.engine.connect() as conn:
        rows = conn.execute(select(pt.outbox).where(pt.outbox.c.entity == entity, pt.outbox.c.record_id == record_id, pt.outbox.c.topic == topic)).mappings().all()
    for row in rows:
        s.automations.on_event(Event(id=row["id"], topic=row["topic"], entity=row["entity"], record_id=record_id, payload=dict(row["payload"]), created_at=row["created_at"]))


def test_at_risk_warns_the_assignee_once_and_the_managers_when_unassigned(svc):
    policy(svc)
    group = add_unit(svc, "SVC_GENERAL")
    agent, boss = add_user(svc, "agent_a", group), add_user(svc, "boss", group)
    make_manager(svc, group, boss)
    mine = ticket(svc, at(2026, 3, 2, 9), assignee=agent, team=group)
    nobody = ticket(svc, at(2026, 3, 2, 9), team=group)
    refresh_sla(svc, at(2026, 3, 2, 9, 30))  # 30 of 60 minutes: on track
    dispatch(svc)
    assert runs(svc, AT_RISK) == [] and in_app_to(svc) == []
    refresh_sla(svc, at(2026, 3, 2, 9, 50))  # 50 of 60 minutes: at risk (80 %)
    dispatch(svc)
    assert svc.queries.get(TICKET, mine, SYSTEM)["sla_state"] == "at_risk"
    assert sorted((r["record_id"], r["status"]) for r in runs(svc, AT_RISK)) == [(mine, "succeeded"), (nobody, "succeeded")]
    assert sorted(in_app_to(svc)) == sorted([agent, boss])
    note = next(d for d in deliveries(svc, "in_app") if int(d["recipient"]) == agent)
    assert "T0000001" in note["body"] and "发票抬头需要修改" in note["body"]
    # the refresh job runs again and the events are re-delivered: nothing more
    refresh_sla(svc, at(2026, 3, 2, 9, 55))
    dispatch(svc)
    replay(svc, TICKET, mine, "record.updated")
    assert len(runs(svc, AT_RISK)) == 2 and len(deliveries(svc, "in_app")) == 2


def test_a_breach_reassigns_to_the_least_loaded_agent_and_notifies_the_manager_once(svc):
    policy(svc)
    dept = add_unit(svc, "SVC")
    group = add_unit(svc, "SVC_GENERAL", parent=dept)
    a, b, c = (add_user(svc, n, group) for n in ("agent_a", "agent_b", "agent_c"))
    boss = add_user(svc, "boss", dept)
    make_manager(svc, dept, boss)  # the group has no manager of its own: the nearest one up the tree
    ticket(svc, at(2026, 3, 2, 9), subject="别的工单", priority="low", assignee=b, team=group, status="open")  # b: one open ticket, c: none
    late = ticket(svc, at(2026, 3, 2, 9), assignee=a, team=group)
    refresh_sla(svc, at(2026, 3, 2, 10, 5))  # first response due 10:00: breached
    dispatch(svc)
    row = svc.queries.get(TICKET, late, SYSTEM)
    assert row["sla_state"] == "breached" and row["assignee"] == c
    [run] = runs(svc, ESCALATE)
    assert run["status"] == "succeeded", run["error"]
    result = run["result"]["actions"][0]["result"]
    assert (result["managers"], result["previous_assignee"], result["reassigned_to"]) == ([boss], a, c)
    assert sorted(in_app_to(svc)) == sorted([boss, c])
    # re-running the refresh, and re-delivering the breach's event, escalate nothing more
    assert refresh_sla(svc, at(2026, 3, 2, 10, 10))["breaches"] == 0
    dispatch(svc)
    [breach] = svc.queries.list(BREACH, SYSTEM, limit=5).rows
    replay(svc, BREACH, breach["id"], "record.created")
    assert len(runs(svc, ESCALATE)) == 1 and len(deliveries(svc, "in_app")) == 2
    assert svc.queries.get(TICKET, late, SYSTEM)["assignee"] == c
    # the resolution target breaches later: a second breach, a second escalation (c is now the one who breached)
    assert refresh_sla(svc, at(2026, 3, 2, 14, 5))["breaches"] == 1
    dispatch(svc)
    assert len(runs(svc, ESCALATE)) == 2 and svc.queries.get(TICKET, late, SYSTEM)["assignee"] == a


def test_the_reassign_rule_is_configurable_and_falls_back_to_the_role(svc, monkeypatch):
    from crmkit.apps.crm import escalation

    monkeypatch.setattr(escalation, "app_settings", lambda: {"sla_escalation": {"reassign": "manager", "manager_role": "CRM Service Manager"}})
    policy(svc)
    group = add_unit(svc, "SVC_GENERAL")
    a = add_user(svc, "agent_a", group)
    lead = add_user(svc, "service_lead", None)  # no unit managers anywhere: the holder of the manager role
    with write_transaction(svc.engine) as conn:
        role = ensure_role(conn, "CRM Service Manager")  # the install created it
        conn.execute(insert(ab_user_role).values(user_id=lead, role_id=role))
    late = ticket(svc, at(2026, 3, 2, 9), assignee=a, team=group)
    refresh_sla(svc, at(2026, 3, 2, 10, 5))
    dispatch(svc)
    assert svc.queries.get(TICKET, late, SYSTEM)["assignee"] == lead
    assert in_app_to(svc) == [lead]
    monkeypatch.setattr(escalation, "app_settings", lambda: {"sla_escalation": {"reassign": "nobody"}})
    refresh_sla(svc, at(2026, 3, 2, 14, 5))  # the resolution breach, with a bad rule: the run fails and says why
    dispatch(svc)
    failed = runs(svc, ESCALATE)[-1]
    assert failed["status"] == "failed" and "sla_escalation.reassign" in failed["error"]


@pytest.fixture
def survey_app(databases, tmp_path):
    from crmkit.runtime.web.app import create_app

    app = create_app(dataclasses.replace(make_settings(databases.fresh("base"), tmp_path), base_url=BASE), testing=True)
    install(app.extensions["crmkit"], "crm_service")
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].session.remove()
        app.extensions["crmkit"].engine.dispose()


def resolve(s, tid: int, status: str = "resolved") -> None:
    row = s.queries.get(TICKET, tid, SYSTEM)
    s.records.update(TICKET, tid, {"status": status}, SYSTEM, expected_version=row["row_version"])


def test_survey_link_is_sent_once_per_resolution_and_works(survey_app):
    s = survey_app.extensions["crmkit"]
    tid = s.records.create(TICKET, {"subject": "快递破损", "requester_name": "周敏", "requester_email": "zhou@example.cn", "requester_mobile": "13512345678"}, SYSTEM)
    grant_consent(s, TICKET, tid, {"channel": "email", "purpose": "service", "version": "web-form"}, SYSTEM)
    resolve(s, tid)
    dispatch(s)
    [mail] = deliveries(s, "email")
    assert (mail["recipient"], mail["status"], mail["entity"], mail["record_id"], mail["purpose"]) == ("zhou@example.cn", "queued", TICKET, tid, "service")
    assert "[#T0000001]" in mail["subject"] and "周敏" in mail["body"]
    path = re.search(re.escape(BASE) + r"(/p/crm/survey/[A-Za-z0-9_.\-]+)", mail["body"]).group(1)
    # replaying the event, closing the ticket (the resolution time stays): no second survey
    replay(s, TICKET, tid, "record.updated")
    resolve(s, tid, "closed")
    dispatch(s)
    assert len(deliveries(s, "email")) == 1 and len(runs(s, SURVEY)) == 1
    c = survey_app.test_client()
    c.environ_base["REMOTE_ADDR"] = "198.51.100.40"
    page = c.get(path)
    assert page.status_code == 200 and "快递破损" in page.get_data(as_text=True)
    done = c.post(path, data={"rating": "5", "comment": "很满意", "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert done.status_code == 200 and 'id="survey-done"' in done.get_data(as_text=True)
    row = s.queries.get(TICKET, tid, SYSTEM)
    assert (row["satisfaction"], row["satisfaction_comment"]) == (5, "很满意")
    # reopened and resolved again after the rating: the condition keeps a second survey away
    resolve(s, tid, "open")
    resolve(s, tid)
    dispatch(s)
    assert len(deliveries(s, "email")) == 1


def test_survey_without_consent_is_refused_and_logged(survey_app):
    s = survey_app.extensions["crmkit"]
    tid = s.records.create(TICKET, {"subject": "电话咨询", "requester_mobile": "13600001111"}, SYSTEM)  # SMS only, no consent recorded
    resolve(s, tid)
    dispatch(s)
    [sms] = deliveries(s, "sms")
    assert (sms["recipient"], sms["status"]) == ("13600001111", "refused") and "consent" in sms["error"]
    [run] = runs(s, SURVEY)
    assert run["status"] == "succeeded" and run["result"]["actions"][0]["result"]["status"] == "refused"
    nobody = s.records.create(TICKET, {"subject": "无联系方式"}, SYSTEM)
    resolve(s, nobody)
    dispatch(s)
    assert runs(s, SURVEY)[-1]["result"]["actions"][0]["result"]["status"] == "skipped" and len(deliveries(s)) == 1


def test_survey_without_a_base_url_fails_clearly_and_sends_nothing(svc):
    assert svc.settings.base_url is None
    tid = svc.records.create(TICKET, {"subject": "无地址", "requester_email": "a@example.cn"}, SYSTEM)
    resolve(svc, tid)
    dispatch(svc)
    [run] = runs(svc, SURVEY)
    assert run["status"] == "failed" and "CRMKIT_BASE_URL" in run["error"]
    assert deliveries(svc) == []


def test_base_url_configuration():
    env = {"CRMKIT_BASE_URL": "https://crm.example.cn/"}
    assert Settings.from_env(env).base_url == "https://crm.example.cn"
    assert Settings.from_env({}).base_url is None
    with pytest.raises(ConfigError, match="CRMKIT_BASE_URL"):
        Settings.from_env({"CRMKIT_BASE_URL": "crm.example.cn"})


def activity(s, **data) -> int:
    return s.records.create(ACTIVITY, {"subject": "回访深圳启明", "kind": "call", "status": "open", **data}, SYSTEM)


def test_activity_reminder_fires_once_at_its_time_and_again_when_moved(svc):
    owner = add_user(svc, "rep", None)
    timed = activity(svc, owner=owner, remind_at=at(2026, 3, 2, 10).isoformat(), due_at=at(2026, 3, 2, 15).isoformat())
    by_due = activity(svc, owner=owner, subject="准备报价", due_at=at(2026, 3, 3, 10).isoformat())  # no reminder time: a day before due
    activity(svc, owner=owner, subject="早已过期", remind_at=at(2026, 2, 20, 10).isoformat())  # a week old: never sent late
    activity(svc, owner=owner, subject="已完成", status="done", remind_at=at(2026, 3, 2, 10).isoformat())
    activity(svc, subject="无负责人", remind_at=at(2026, 3, 2, 10).isoformat())
    svc.automations.run_schedules(at(2026, 3, 2, 9, 55))
    assert runs(svc, REMIND) == []
    svc.automations.run_schedules(at(2026, 3, 2, 10, 0))
    assert sorted(r["record_id"] for r in runs(svc, REMIND)) == sorted([timed, by_due])
    assert all(r["status"] == "succeeded" for r in runs(svc, REMIND))
    assert in_app_to(svc) == [owner, owner]
    assert svc.queries.get(ACTIVITY, timed, SYSTEM)["reminded_at"] == at(2026, 3, 2, 10)
    for minute in (5, 10):  # later slots, and the same slot again (a second worker): nothing more
        svc.automations.run_schedules(at(2026, 3, 2, 10, minute))
    svc.automations.run_schedules(at(2026, 3, 2, 10, 0))
    assert len(runs(svc, REMIND)) == 2
    row = svc.queries.get(ACTIVITY, timed, SYSTEM)
    svc.records.update(ACTIVITY, timed, {"remind_at": at(2026, 3, 2, 11).isoformat()}, SYSTEM, expected_version=row["row_version"])
    svc.automations.run_schedules(at(2026, 3, 2, 10, 55))
    assert len(runs(svc, REMIND)) == 2
    svc.automations.run_schedules(at(2026, 3, 2, 11, 0))
    assert [r["record_id"] for r in runs(svc, REMIND)][2:] == [timed] and len(deliveries(svc, "in_app")) == 3


def test_in_app_messages_go_to_user_fields_only(svc):
    from crmkit.runtime.errors import DefinitionError
    from crmkit.runtime.meta.compile import RawDocument

    def body(to: str) -> dict:
        return {"entity": TICKET, "name": "ping", "label": {"zh": "提醒", "en": "Ping"}, "trigger": {"type": "created"},
                "actions": [{"message": {"channel": "in_app", "to": to, "body": "{{ subject }}"}}]}

    with pytest.raises(DefinitionError) as err:
        svc.store.save([RawDocument("automation", "crm_service", body("requester_name"), "test:ping")])
    assert any(p[1] == "/actions/0/message/to" and "user field" in p[2] for p in err.value.problems), err.value.problems
    assert f"{TICKET}:ping" not in svc.store.catalog().automations
    svc.store.save([RawDocument("automation", "crm_service", body("assignee"), "test:ping")])  # a user field: accepted
    assert f"{TICKET}:ping" in svc.store.catalog().automations
