"""入会: duplicate and missing-field checks on applications, the manager override, card numbers (sequence or card
pool) on approval, and joining points. Real databases (SQLite and PostgreSQL), asserting what is stored."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from crmkit.apps.membership import card_pool
from crmkit.apps.membership.ledger import tables as lt
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import PermissionDenied, ValidationFailed
from crmkit.runtime.packages import run_action

from api_support import row_count
from ledger_support import make_plan
from membership_join_support import MEMBERS, application, approve, member_of, people, pool_rows
from policy_support import valid_id_number
from workflow_support import APPLICATIONS, applicant, state_of


@pytest.fixture
def team(app, services):
    return people(app, services)


def create(services, actor=SYSTEM, **kw) -> int:
    return services.records.create(APPLICATIONS, applicant(**kw), actor)


@pytest.mark.parametrize("rule", ["mobile", "id_number", "name_birthday"])
@pytest.mark.parametrize("against", ["member", "application"])
def test_each_duplicate_rule_flags_the_application(services, rule, against):
    base = {"name": "王芳", "mobile": "13700137000", "birthday": "1990-01-01", "id_number": valid_id_number(1)}
    other = {"name": "李雷", "mobile": "13600136000", "birthday": "1985-03-03", "id_number": valid_id_number(2)}
    same = {"mobile": {"mobile": base["mobile"]}, "id_number": {"id_number": base["id_number"]},
            "name_birthday": {"name": base["name"], "birthday": base["birthday"]}}[rule]
    if against == "member":
        first = services.records.create(MEMBERS, {**base, "joined_on": "2025-01-01"}, SYSTEM)
    else:
        first = create(services, **base)
    rid = create(services, **{**other, **same})
    a = application(services, rid)
    label = {"mobile": "mobile", "id_number": "id_number", "name_birthday": "name + birthday"}[rule]
    assert a["is_duplicate"] is True
    assert a["duplicate_of"] == f"{against} #{first} ({label})"
    # An application with nothing in common is not flagged.
    clean = create(services, name="赵敏", mobile="13500135000", birthday="1992-02-02", id_number=valid_id_number(3))
    assert application(services, clean)["is_duplicate"] is False and application(services, clean)["duplicate_of"] is None


def test_decided_applications_do_not_count_as_duplicates(services, team):
    first = create(services, mobile="13700137001")
    services.workflows.transition(APPLICATIONS, first, "reject", team["reviewer"], values={"rejection_reason": "资料不实"})
    rid = create(services, mobile="13700137001", name="另一人", birthday="1980-08-08")
    assert application(services, rid)["is_duplicate"] is False


@pytest.mark.parametrize("missing,expected", [({"id_number": None, "birthday": None}, "id_number, birthday"),
                                              ({"id_number": None}, "id_number"), ({}, None)])
def test_missing_key_fields_are_listed_and_refreshed_on_edit(services, missing, expected):
    data = {"birthday": "1990-05-01", "id_number": valid_id_number(7), **missing}
    rid = create(services, **data)
    assert application(services, rid)["missing_fields"] == expected
    if expected:
        row = application(services, rid)
        services.records.update(APPLICATIONS, rid, {"id_number": valid_id_number(8), "birthday": "1990-01-01"}, SYSTEM,
                                expected_version=row["row_version"])
        assert application(services, rid)["missing_fields"] is None


def test_flag_fields_cannot_be_written_by_users(services):
    with pytest.raises(ValidationFailed) as exc:
        create(services, is_duplicate=False, duplicate_of="x", override_reason="mine")
    assert {"is_duplicate", "duplicate_of", "override_reason"} <= set(exc.value.field_errors)
    assert row_count(services, APPLICATIONS) == 0


def test_a_flagged_duplicate_needs_a_manager_override_with_a_reason(services, team):
    services.records.create(MEMBERS, {"name": "老会员", "mobile": "13900139000", "joined_on": "2024-01-01"}, SYSTEM)
    rid = create(services, team["front"])  # same mobile as the member
    services.workflows.transition(APPLICATIONS, rid, "start_review", team["reviewer"])
    with pytest.raises(ValidationFailed) as exc:
        services.workflows.transition(APPLICATIONS, rid, "approve", team["reviewer"])
    assert "duplicate" in str(exc.value.field_errors["_schema"][0]).lower() or "重复" in str(exc.value.field_errors["_schema"][0])
    with pytest.raises(PermissionDenied):  # a reviewer may not override
        services.workflows.transition(APPLICATIONS, rid, "override_duplicate", team["reviewer"], values={"override_reason": "同一人换号"})
    with pytest.raises(ValidationFailed) as exc:  # the reason is required
        services.workflows.transition(APPLICATIONS, rid, "override_duplicate", team["boss"], values={"override_reason": ""})
    assert "override_reason" in exc.value.field_errors
    assert application(services, rid)["override_reason"] is None
    services.workflows.transition(APPLICATIONS, rid, "override_duplicate", team["boss"], values={"override_reason": "老会员手机号转让，已核实身份"})
    a = application(services, rid)
    assert a["override_reason"] == "老会员手机号转让，已核实身份" and a["overridden_by"] == team["boss"].id
    assert state_of(services, APPLICATIONS, rid) == "under_review"
    # The guard passes now; the member write still refuses the taken mobile, so the manager learns it at approval.
    req = services.workflows.transition(APPLICATIONS, rid, "approve", team["reviewer"]).pending_approval
    assert req


def test_override_then_approve_creates_the_member_for_a_name_birthday_duplicate(services, team):
    services.records.create(MEMBERS, {"name": "李娜", "mobile": "13800000001", "birthday": "1990-05-01", "joined_on": "2024-01-01"}, SYSTEM)
    rid = create(services, team["front"])  # 李娜, 1990-05-01, another mobile: a namesake born the same day
    assert application(services, rid)["duplicate_of"].endswith("(name + birthday)")
    services.workflows.transition(APPLICATIONS, rid, "start_review", team["reviewer"])
    services.workflows.transition(APPLICATIONS, rid, "override_duplicate", team["boss"], values={"override_reason": "同名同生日，非同一人"})
    req = services.workflows.transition(APPLICATIONS, rid, "approve", team["reviewer"]).pending_approval
    from workflow_support import pending_tasks

    task = [t for t in pending_tasks(services, req) if t["assignee_id"] == team["boss"].id][0]
    services.workflows.decide(task["id"], "approve", team["boss"])
    assert state_of(services, APPLICATIONS, rid) == "approved"
    assert member_of(services, rid)["mobile"] == "13900139000"


def test_approval_assigns_the_sequence_card_level_store_and_history(services, team):
    level = services.records.create("membership.level", {"name": "普卡", "code": "S", "level_value": 1}, SYSTEM)
    services.records.create("membership.level", {"name": "金卡", "code": "G", "level_value": 2}, SYSTEM)
    rid = create(services, team["front"], source="front_desk")
    approve(services, rid, team["reviewer"], team["boss"])
    m = member_of(services, rid)
    assert m["card_no"] == "VIP00000001" and m["level"] == level and m["status"] == "active" and m["join_channel"] == "store"
    hist = services.queries.list("membership.card_history", SYSTEM, count="exact").rows
    assert [(h["action"], h["card_no"], h["member"]) for h in hist] == [("issued", "VIP00000001", m["id"])]
    assert pool_rows(services) == []


def test_pool_mode_takes_the_next_free_pool_card_and_skips_special_numbers(services, team):
    created = card_pool.generate_batch(services.engine, prefix="MC", start=1, count=3, digits=6, check_digit=True, actor_id=None)
    assert created["created"] == 3
    again = card_pool.generate_batch(services.engine, prefix="MC", start=2, count=3, digits=6, check_digit=True, actor_id=None)
    assert again == {"created": 1, "skipped": 2, "batch": "MC2+3"}
    card_pool.add_special(services.engine, "88888888", actor_id=None)
    with pytest.raises(ValidationFailed):
        card_pool.add_special(services.engine, "88888888", actor_id=None)
    nos = [r["card_no"] for r in pool_rows(services)]
    assert nos[:4] == ["MC0000018", "MC0000026", "MC0000034", "MC0000042"]  # Luhn check digits
    run_action(services, "membership", "cards.set_mode", SYSTEM, {"mode": "pool"})
    ids = [create(services, mobile=f"1390013900{i}", name=n, birthday=None) for i, n in enumerate(["甲一", "乙二"])]
    for rid in ids:
        approve(services, rid, team["reviewer"], team["boss"])
    assert [member_of(services, rid)["card_no"] for rid in ids] == ["MC0000018", "MC0000026"]
    rows = {r["card_no"]: r for r in pool_rows(services)}
    assert rows["MC0000018"]["status"] == "used" and rows["MC0000018"]["member_id"] == member_of(services, ids[0])["id"]
    assert rows["88888888"]["status"] == "free"


def test_an_empty_pool_refuses_the_approval_and_stores_nothing(services, team):
    card_pool.set_card_mode(services.engine, "pool", actor_id=None)
    rid = create(services)
    with pytest.raises(card_pool.PoolEmpty):
        approve(services, rid, team["reviewer"], team["boss"])
    assert state_of(services, APPLICATIONS, rid) == "under_review" and row_count(services, MEMBERS) == 0


def test_card_number_settings_need_a_manager_and_valid_input(services, team):
    with pytest.raises(PermissionDenied):
        run_action(services, "membership", "cards.set_mode", team["front"], {"mode": "pool"})
    with pytest.raises(ValidationFailed) as exc:
        run_action(services, "membership", "cards.generate_batch", team["boss"], {"prefix": "M-1", "start": -1, "count": 0})
    assert set(exc.value.field_errors) == {"prefix", "start", "count"}
    assert pool_rows(services) == []
    assert run_action(services, "membership", "cards.set_mode", team["boss"], {"mode": "pool"}) == {"mode": "pool"}


def test_online_joining_points_are_posted_once_with_the_application_key(services, team):
    make_plan(services, starts_on="2000-01-01", ends_on="2099-12-31",
              items=[{"name": "消费积分", "kind": "consumption", "per_yuan": "1"}, {"name": "线上入会礼", "kind": "online_join", "fixed_points": 100}])
    online = create(services, source="online")
    desk = create(services, source="front_desk", mobile="13900139111", name="前台客", birthday="1991-01-01")
    for rid in (online, desk):
        approve(services, rid, team["reviewer"], team["boss"])
    with services.engine.connect() as conn:
        entries = conn.execute(select(lt.entry.c.idempotency_key, lt.entry.c.member_id, lt.entry.c.amount)).all()
    assert [tuple(e) for e in entries] == [(f"join:{online}", member_of(services, online)["id"], 100)]


@pytest.mark.postgres_only
def test_sixteen_concurrent_approvals_draw_sixteen_distinct_pool_cards(services, team):
    import threading

    card_pool.generate_batch(services.engine, prefix="PC", start=1, count=20, actor_id=None)
    card_pool.set_card_mode(services.engine, "pool", actor_id=None)
    from workflow_support import pending_tasks

    tasks = []
    for i in range(16):
        rid = create(services, mobile=f"1370000{i:04d}", name=f"并发{chr(0x4e00 + i)}", birthday=None, id_number=valid_id_number(100 + i))
        services.workflows.transition(APPLICATIONS, rid, "start_review", team["reviewer"])
        req = services.workflows.transition(APPLICATIONS, rid, "approve", team["reviewer"]).pending_approval
        tasks.append((rid, [t for t in pending_tasks(services, req) if t["assignee_id"] == team["boss"].id][0]["id"]))
    barrier, errors = threading.Barrier(16), []
    from crmkit.runtime.db import make_engine
    from crmkit.runtime.services import Services

    wide = make_engine(services.engine.url.render_as_string(hide_password=False), pool_size=40, max_overflow=0)
    concurrent = Services.build(services.settings, engine=wide)  # every thread gets its own connection

    def worker(task_id):
        barrier.wait()
        try:
            concurrent.workflows.decide(task_id, "approve", team["boss"])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for _, t in tasks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    wide.dispose()
    assert errors == []
    cards = [member_of(services, rid)["card_no"] for rid, _ in tasks]
    assert len(set(cards)) == 16 and set(cards) == {f"PC{i:08d}" for i in range(1, 17)}
    used = [r for r in pool_rows(services) if r["status"] == "used"]
    assert len(used) == 16 and len({r["member_id"] for r in used}) == 16
