"""Automations: every trigger kind, conditions, every action kind, bulk edits and imports, idempotency, simulate."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import DefinitionError
from crmkit.runtime.storage import platform_tables as pt

from automation_support import MEMBER, automation, deliveries, dispatch, member, runs, save
from core_support import admin_id

UTC = dt.timezone.utc
SET_VIP = [{"set": {"notes": {"expr": "CONCAT('vip:', name)"}, "tags": ["vip"]}}]


def _note(services, rid):
    return services.queries.get(MEMBER, rid, SYSTEM)["notes"]


def _clear_shipped(services):
    for key in list(services.store.catalog().automations):
        services.automations.set_enabled(key, False, SYSTEM)


@pytest.fixture
def svc(services):
    _clear_shipped(services)  # the membership template's own automations stay out of the way
    return services


def test_created_trigger_with_condition_sets_fields(svc):
    save(svc, automation("vip", {"type": "created"}, SET_VIP, condition="CONTAINS(name, '王')"))
    yes = svc.records.create(MEMBER, member(), SYSTEM)
    no = svc.records.create(MEMBER, member(name="李雷", mobile="13800138001"), SYSTEM)
    dispatch(svc)
    assert _note(svc, yes) == "vip:王芳" and svc.queries.get(MEMBER, yes, SYSTEM)["tags"] == ["vip"]
    assert _note(svc, no) is None
    log = runs(svc, f"{MEMBER}:vip")
    assert [(r["record_id"], r["status"], r["trigger"]) for r in log] == [(yes, "succeeded", "created")]
    assert log[0]["occurrence"].startswith("event:") and log[0]["finished_at"] is not None
    assert log[0]["result"]["actions"][0]["set"] == ["notes", "tags"]
    # the automation's own update does not trigger it again, and nothing loops
    dispatch(svc)
    assert len(runs(svc, f"{MEMBER}:vip")) == 1


def test_updated_trigger_with_field_filter(svc):
    save(svc, automation("on_mobile", {"type": "updated", "fields": ["mobile"]}, [{"set": {"notes": "mobile changed"}}]))
    rid = svc.records.create(MEMBER, member(), SYSTEM)
    dispatch(svc)
    v = svc.queries.get(MEMBER, rid, SYSTEM)["row_version"]
    v = svc.records.update(MEMBER, rid, {"address": "上海"}, SYSTEM, expected_version=v)
    dispatch(svc)
    assert _note(svc, rid) is None and runs(svc) == []
    svc.records.update(MEMBER, rid, {"mobile": "13911112222"}, SYSTEM, expected_version=v)
    dispatch(svc)
    assert _note(svc, rid) == "mobile changed" and len(runs(svc)) == 1


def test_updates_by_an_automation_trigger_others_but_the_chain_stops(svc):
    # a pings b, b pings a: each fires on the other's writes until the depth limit
    save(svc, automation("ping", {"type": "updated", "fields": ["notes"]}, [{"set": {"address": {"expr": "CONCAT(address, 'a')"}}}]),
         automation("pong", {"type": "updated", "fields": ["address"]}, [{"set": {"notes": {"expr": "CONCAT(notes, 'b')"}}}]))
    rid = svc.records.create(MEMBER, member(address=""), SYSTEM)
    v = svc.queries.get(MEMBER, rid, SYSTEM)["row_version"]
    svc.records.update(MEMBER, rid, {"notes": "x"}, SYSTEM, expected_version=v)
    for _ in range(6):
        dispatch(svc)
    assert len(runs(svc)) == 3  # depth 1, 2, 3, then the chain stops
    row = svc.queries.get(MEMBER, rid, SYSTEM)
    assert row["notes"] == "xb" and row["address"] == "aa"


def test_deleted_trigger_messages_the_owner(svc):
    save(svc, automation("gone", {"type": "deleted"}, [{"message": {"channel": "in_app", "to": "$creator", "body": "{{ name }} was deleted"}}]))
    admin = svc.queries.policy  # noqa: F841 - the actor below is the admin user
    from crmkit.runtime.actor import Actor

    uid = admin_id(svc)
    rid = svc.records.create(MEMBER, member(), Actor(id=uid, username="admin", is_admin=True))
    svc.records.delete(MEMBER, rid, SYSTEM)
    dispatch(svc)
    sent = deliveries(svc, "in_app")
    assert len(sent) == 1 and sent[0]["recipient"] == str(uid) and sent[0]["body"] == "王芳 was deleted"
    assert runs(svc)[0]["trigger"] == "deleted"


def test_state_entered_trigger(svc):
    app_key = "membership.application"
    save(svc, automation("reviewing", {"type": "state_entered", "state": "under_review"}, [{"set": {"notes": "in review"}}], entity=app_key))
    rid = svc.records.create(app_key, {"name": "李娜", "mobile": "13900139000", "source": "online"}, SYSTEM)
    dispatch(svc)
    assert runs(svc) == []
    svc.workflows.transition(app_key, rid, "start_review", SYSTEM)
    dispatch(svc)
    assert svc.queries.get(app_key, rid, SYSTEM)["notes"] == "in review"
    assert [r["trigger"] for r in runs(svc)] == ["state_entered"]


def test_date_relative_and_month_triggers_with_a_fixed_clock(svc):
    save(svc, automation("before_birthday", {"type": "date", "field": "birthday", "offset_days": -3, "match": "anniversary"},
                         [{"set": {"notes": "birthday soon"}}]),
         automation("birthday_month", {"type": "date", "field": "birthday", "match": "month"}, [{"set": {"address": "gift"}}],
                    condition="status = 'active'"),
         automation("exact", {"type": "date", "field": "joined_on", "offset_days": 30}, [{"set": {"tags": ["30d"]}}]))
    may20 = svc.records.create(MEMBER, member(birthday="1990-05-20", joined_on="2026-04-17"), SYSTEM)
    may02 = svc.records.create(MEMBER, member(name="赵", mobile="13800000002", birthday="1985-05-02"), SYSTEM)
    lost = svc.records.create(MEMBER, member(name="钱", mobile="13800000003", birthday="1985-05-09", status="lost"), SYSTEM)
    june = svc.records.create(MEMBER, member(name="孙", mobile="13800000004", birthday="1985-06-17"), SYSTEM)
    now = dt.datetime(2026, 5, 17, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    assert svc.automations.run_dates(now) == {f"{MEMBER}:before_birthday": 1, f"{MEMBER}:birthday_month": 2, f"{MEMBER}:exact": 1}
    assert _note(svc, may20) == "birthday soon" and _note(svc, may02) is None
    assert {r: svc.queries.get(MEMBER, r, SYSTEM)["address"] for r in (may20, may02, lost, june)} == {may20: "gift", may02: "gift", lost: None, june: None}
    assert svc.queries.get(MEMBER, may20, SYSTEM)["tags"] == ["30d"]
    # the same day again (another worker, a retry), and later in the month: nothing more
    assert svc.automations.run_dates(now + dt.timedelta(hours=3)) == {f"{MEMBER}:before_birthday": 0, f"{MEMBER}:birthday_month": 0, f"{MEMBER}:exact": 0}
    assert svc.automations.run_dates(dt.datetime(2026, 5, 30, 1, tzinfo=UTC))[f"{MEMBER}:birthday_month"] == 0
    occ = {(r["automation"].split(":")[1], r["occurrence"]) for r in runs(svc)}
    assert ("birthday_month", "month:2026-05") in occ and ("before_birthday", "date:2026-05-17") in occ
    # next June the June birthday fires
    assert svc.automations.run_dates(dt.datetime(2026, 6, 1, 1, tzinfo=UTC))[f"{MEMBER}:birthday_month"] == 1


def test_schedule_trigger_fires_on_its_slots_only(svc):
    save(svc, automation("weekly", {"type": "schedule", "cron": "0 9 * * 1"}, [{"set": {"address": {"expr": "CONCAT(address, 'w')"}}}],
                         condition="status = 'active'"))
    a = svc.records.create(MEMBER, member(address=""), SYSTEM)
    b = svc.records.create(MEMBER, member(name="钱", mobile="13800000003", status="lost", address=""), SYSTEM)
    monday_9 = dt.datetime(2026, 11, 23, 1, 0, 20, tzinfo=UTC)   # Monday 09:00:20 Shanghai
    assert svc.automations.run_schedules(monday_9 - dt.timedelta(minutes=1)) == {}
    assert svc.automations.run_schedules(monday_9) == {f"{MEMBER}:weekly": 1}
    assert svc.automations.run_schedules(monday_9 + dt.timedelta(seconds=30)) == {f"{MEMBER}:weekly": 0}  # same slot
    assert svc.automations.run_schedules(monday_9 + dt.timedelta(days=7)) == {f"{MEMBER}:weekly": 1}
    assert svc.queries.get(MEMBER, a, SYSTEM)["address"] == "ww" and svc.queries.get(MEMBER, b, SYSTEM)["address"] is None
    assert [r["occurrence"] for r in runs(svc)] == ["slot:2026-11-23T09:00", "slot:2026-11-30T09:00"]


def test_manual_trigger_and_run_log_errors(svc):
    save(svc, automation("flag", {"type": "manual"}, [{"set": {"notes": "flagged"}}, {"set": {"mobile": {"expr": "'not a phone'"}}}]))
    rid = svc.records.create(MEMBER, member(), SYSTEM)
    out = svc.automations.run_manual(MEMBER, rid, "flag", SYSTEM, request_id="r1")
    assert out["status"] == "failed" and "action 2 (set)" in out["error"] and "mobile" in out["error"]
    assert _note(svc, rid) == "flagged"  # the first action stays done; the run says where it stopped
    again = svc.automations.run_manual(MEMBER, rid, "flag", SYSTEM, request_id="r1")
    assert again["status"] is None and len(runs(svc)) == 1  # the same request id never acts twice


def test_create_related_record_action(svc):
    save(svc, automation("order", {"type": "manual"}, [{"create": {"entity": "membership.order", "link": "member",
                                                                   "values": {"amount": "10.00"}}}]))
    rid = svc.records.create(MEMBER, member(), SYSTEM)
    out = svc.automations.run_manual(MEMBER, rid, "order", SYSTEM, request_id="r2")
    assert out["status"] == "succeeded", out
    new_id = out["result"]["actions"][0]["id"]
    assert svc.queries.get("membership.order", new_id, SYSTEM)["member"] == rid


def test_message_action_checks_consent(svc):
    save(svc, automation("hello", {"type": "created"}, [{"message": {"channel": "sms", "to": "mobile", "body": "你好 {{ name }}"}}]))
    svc.records.create(MEMBER, member(), SYSTEM)
    dispatch(svc)
    sms = deliveries(svc, "sms")
    assert len(sms) == 1 and sms[0]["recipient"] == "13800138000" and sms[0]["body"] == "你好 王芳"
    assert sms[0]["status"] in ("refused", "queued")  # consent is the messaging module's decision
    assert runs(svc)[0]["result"]["actions"][0]["status"] == sms[0]["status"]


def test_webhook_action_uses_webhook_delivery(svc):
    from crmkit.runtime.actor import Actor

    admin = Actor(id=admin_id(svc), username="admin", is_admin=True)
    hook, _ = svc.webhooks.create({"name": "crm-sync", "url": "https://example.com/hook", "entity": MEMBER, "events": ["record.created"],
                                   "owner_user_id": admin.id}, admin)
    save(svc, automation("push", {"type": "manual"}, [{"webhook": "crm-sync"}]))
    rid = svc.records.create(MEMBER, member(), SYSTEM)
    out = svc.automations.run_manual(MEMBER, rid, "push", SYSTEM, request_id="r3")
    assert out["status"] == "succeeded", out
    d = svc.webhooks.delivery(out["result"]["actions"][0]["webhook_delivery"])
    assert d["event_type"] == "automation.push" and d["payload"]["record"]["name"] == "王芳" and d["job_id"] is not None


def test_run_app_action(svc):
    save(svc, automation("points", {"type": "manual"}, [{"run": {"app": "membership", "action": "points.adjust",
                                                                 "params": {"member": "$id", "points": 50, "reason": "automation bonus"}}}]))
    rid = svc.records.create(MEMBER, member(), SYSTEM)
    out = svc.automations.run_manual(MEMBER, rid, "points", SYSTEM, request_id="r4")
    assert out["status"] == "succeeded", out
    result = out["result"]["actions"][0]
    assert result["run"] == "membership:points.adjust" and result["result"]["status"] == "applied" and result["result"]["entry"]


def test_bulk_edit_and_import_fire_per_record(svc):
    save(svc, automation("tagged", {"type": "updated", "fields": ["status"]}, [{"set": {"notes": "status changed"}}]),
         automation("imported", {"type": "created"}, [{"set": {"address": "imported"}}]))
    results = svc.records.write_many(MEMBER, [member(name=f"会员{i}", mobile=f"1380000010{i}") for i in range(5)], SYSTEM)
    ids = [r.id for r in results]
    svc.records.bulk_update(MEMBER, ids[:3], {"status": "lost"}, SYSTEM)
    dispatch(svc)
    assert all(svc.queries.get(MEMBER, i, SYSTEM)["address"] == "imported" for i in ids)
    assert [i for i in ids if _note(svc, i) == "status changed"] == ids[:3]
    assert len(runs(svc, f"{MEMBER}:imported")) == 5 and len(runs(svc, f"{MEMBER}:tagged")) == 3


def test_redelivered_event_does_not_act_twice(svc):
    save(svc, automation("once", {"type": "created"}, [{"message": {"channel": "in_app", "to": "$owner", "body": "hi"}}]))
    rid = svc.records.create(MEMBER, member(), SYSTEM)
    with svc.engine.connect() as conn:
        row = conn.execute(select(pt.outbox).where(pt.outbox.c.record_id == rid, pt.outbox.c.topic == "record.created")).mappings().one()
    from crmkit.runtime.events import Event

    event = Event(id=row["id"], topic=row["topic"], entity=row["entity"], record_id=rid, payload=dict(row["payload"]), created_at=row["created_at"])
    svc.automations.on_event(event)
    svc.automations.on_event(event)
    dispatch(svc)  # the dispatcher hands it over a third time
    assert len(runs(svc)) == 1


def test_simulate_acts_on_nothing(svc):
    save(svc, automation("bday", {"type": "date", "field": "birthday", "match": "month"}, [{"set": {"notes": "x"}}], condition="status = 'active'"),
         automation("weekly", {"type": "schedule", "cron": "0 9 * * 1"}, [{"set": {"notes": "y"}}]))
    a = svc.records.create(MEMBER, member(birthday="1990-05-20"), SYSTEM)
    svc.records.create(MEMBER, member(name="孙", mobile="13800000004", birthday="1985-06-17"), SYSTEM)
    dispatch(svc)
    with svc.engine.connect() as conn:
        before = conn.execute(select(pt.outbox.c.id)).all(), conn.execute(select(pt.audit.c.id)).all()
    sim = svc.automations.simulate(f"{MEMBER}:bday", at=dt.datetime(2026, 5, 3, tzinfo=UTC))
    assert [r["id"] for r in sim["records"]] == [a] and sim["records"][0]["title"] == "王芳"
    weekly = svc.automations.simulate(f"{MEMBER}:weekly", at=dt.datetime(2026, 11, 24, 1, tzinfo=UTC))
    assert weekly["due"] is False and len(weekly["records"]) == 2
    with svc.engine.connect() as conn:
        after = conn.execute(select(pt.outbox.c.id)).all(), conn.execute(select(pt.audit.c.id)).all()
    assert before == after and runs(svc) == [] and _note(svc, a) is None


@pytest.mark.parametrize("body,pointer,words", [
    (automation("bad", {"type": "created"}, [{"set": {"notes": "x"}}], condition="name = 1 AND"), "/condition", "character"),
    (automation("bad", {"type": "created"}, [{"set": {"nope": "x"}}]), "/actions/0/set/nope", "not a field"),
    (automation("bad", {"type": "updated", "fields": ["nope"]}, [{"set": {"notes": "x"}}]), "/trigger/fields/0", "not a field"),
    (automation("bad", {"type": "date", "field": "name"}, [{"set": {"notes": "x"}}]), "/trigger/field", "date"),
    (automation("bad", {"type": "schedule", "cron": "61 * * * *"}, [{"set": {"notes": "x"}}]), "/trigger/cron", "schedule"),
    (automation("bad", {"type": "state_entered", "state": "x"}, [{"set": {"notes": "x"}}]), "/trigger/state", "workflow"),
    (automation("bad", {"type": "manual"}, [{"run": {"app": "membership", "action": "nope"}}]), "/actions/0/run/action", "no action"),
    (automation("bad", {"type": "manual"}, [{"set": {"notes": {"expr": "name +"}}}]), "/actions/0/set/notes/expr", "character"),
    (automation("bad", {"type": "sometimes"}, [{"set": {"notes": "x"}}]), "/trigger", ""),
])
def test_bad_definitions_are_refused_with_positions(svc, body, pointer, words):
    with pytest.raises(DefinitionError) as err:
        save(svc, body)
    problems = err.value.problems
    assert any(p[1] == pointer and words in p[2] for p in problems), problems
    assert f"{MEMBER}:bad" not in svc.store.catalog().automations


def test_shipped_membership_automations(services):
    cat = services.store.catalog()
    assert {"membership.member:birthday_greeting", "membership.member:welcome"} <= set(cat.automations)
    rid = services.records.create(MEMBER, member(joined_on=dt.date.today().isoformat(), consent_sms=True), SYSTEM)
    dispatch(services)
    welcome = runs(services, "membership.member:welcome")
    assert [(r["record_id"], r["status"]) for r in welcome] == [(rid, "succeeded")]
    assert any(d["channel"] == "sms" and "欢迎" in d["body"] for d in deliveries(services))
    old = services.records.create(MEMBER, member(name="老会员", mobile="13800009999", joined_on="2020-01-01"), SYSTEM)
    dispatch(services)
    assert old not in [r["record_id"] for r in runs(services, "membership.member:welcome")]
    may = dt.datetime(2026, 5, 1, 1, tzinfo=UTC)
    sim = services.automations.simulate("membership.member:birthday_greeting", at=may)
    assert {r["id"] for r in sim["records"]} == {rid, old}
    services.automations.run_dates(may)
    assert len(runs(services, "membership.member:birthday_greeting")) == 2


@pytest.mark.postgres_only
def test_two_concurrent_runners_act_once(svc, tmp_path):
    from crmkit.runtime.config import Settings
    from crmkit.runtime.services import Services

    save(svc, automation("bday", {"type": "date", "field": "birthday", "match": "month"},
                         [{"message": {"channel": "in_app", "to": "$owner", "body": "{{ name }}"}}]))
    from crmkit.runtime.actor import Actor

    admin = Actor(id=admin_id(svc), username="admin", is_admin=True)
    ids = [svc.records.create(MEMBER, member(name=f"会员{i}", mobile=f"1380000020{i}", birthday="1990-05-0" + str(i + 1)), admin) for i in range(8)]
    url = svc.engine.url.render_as_string(hide_password=False)
    others = [Services.build(Settings(database_url=url, secret_key="k" * 40, var_dir=tmp_path / f"v{i}")) for i in range(2)]
    now = dt.datetime(2026, 5, 10, 1, tzinfo=UTC)
    barrier, results = threading.Barrier(2), []

    def run(s):
        barrier.wait()
        results.append(s.automations.run_dates(now))

    threads = [threading.Thread(target=run, args=(s,)) for s in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    key = f"{MEMBER}:bday"
    assert sum(r[key] for r in results) == 8
    assert sorted(r["record_id"] for r in runs(svc, key)) == sorted(ids)
    assert len(deliveries(svc, "in_app")) == 8
    assert all(r["status"] == "succeeded" for r in runs(svc, key))
    for s in others:
        s.engine.dispose()
