"""The workflow engine: the join-application workflow (membership template) and a lab workflow with a
multi-step approval chain. Real databases (SQLite and PostgreSQL), asserting what is stored."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import PermissionDenied, ValidationFailed
from crmkit.runtime.workflow import TransitionNotAvailable
from crmkit.runtime.workflow.tables import approval_request, workflow_history

from api_support import row_count
from workflow_support import (
    APPLICATIONS, actors, applicant, audit_actions, count, history_rows, outbox_topics, pending_tasks, request_status, staff, state_of,
)


@pytest.fixture
def team(app, services):
    return actors(services, staff(app))


def test_a_new_record_starts_in_the_initial_state(services, team):
    rid = services.records.create(APPLICATIONS, applicant(), team["clerk"])
    assert state_of(services, APPLICATIONS, rid) == "submitted"
    assert services.queries.get(APPLICATIONS, rid, SYSTEM)["workflow_state"] == "submitted"


@pytest.mark.parametrize("how", ["create", "update", "bulk"])
def test_the_state_cannot_be_written_through_the_record_service(services, team, how):
    rid = services.records.create(APPLICATIONS, applicant(), SYSTEM)
    before = row_count(services, APPLICATIONS)
    with pytest.raises(ValidationFailed) as exc:
        if how == "create":
            services.records.create(APPLICATIONS, applicant(mobile="13900139001", workflow_state="approved"), SYSTEM)
        elif how == "update":
            services.records.update(APPLICATIONS, rid, {"workflow_state": "approved", "notes": "x"}, SYSTEM, expected_version=1)
        else:
            services.records.bulk_update(APPLICATIONS, [rid], {"workflow_state": "approved"}, SYSTEM)
    assert list(exc.value.field_errors) == ["workflow_state"]
    assert "transition" in exc.value.field_errors["workflow_state"][0]
    assert row_count(services, APPLICATIONS) == before
    assert state_of(services, APPLICATIONS, rid) == "submitted"
    assert services.queries.get(APPLICATIONS, rid, SYSTEM)["notes"] is None


def test_a_transition_is_refused_to_a_user_without_the_role_and_nothing_is_stored(services, team):
    rid = services.records.create(APPLICATIONS, applicant(), team["clerk"])
    audits = len(audit_actions(services, APPLICATIONS, rid))
    with pytest.raises(PermissionDenied):
        services.workflows.transition(APPLICATIONS, rid, "start_review", team["clerk"])
    assert state_of(services, APPLICATIONS, rid) == "submitted"
    assert history_rows(services, APPLICATIONS, rid) == []
    assert len(audit_actions(services, APPLICATIONS, rid)) == audits
    _, available = services.workflows.available(APPLICATIONS, rid, team["clerk"])
    assert available == []


def test_a_transition_by_role_moves_the_state_and_writes_history_audit_and_event(services, team):
    rid = services.records.create(APPLICATIONS, applicant(), team["clerk"])
    _, available = services.workflows.available(APPLICATIONS, rid, team["reviewer"])
    assert [a.transition.name for a in available] == ["start_review", "reject"]
    result = services.workflows.transition(APPLICATIONS, rid, "start_review", team["reviewer"], comment="looks complete")
    assert result.state == "under_review" and result.row_version == 2
    assert state_of(services, APPLICATIONS, rid) == "under_review"
    [h] = history_rows(services, APPLICATIONS, rid)
    assert (h["event"], h["transition"], h["from_state"], h["to_state"], h["actor_id"], h["comment"]) == (
        "transitioned", "start_review", "submitted", "under_review", team["reviewer"].id, "looks complete")
    assert audit_actions(services, APPLICATIONS, rid) == ["create", "update", "transition"]
    assert outbox_topics(services, APPLICATIONS, rid) == ["record.created", "record.updated", "workflow.transitioned"]
    # The same transition again is not available from the new state.
    with pytest.raises(TransitionNotAvailable):
        services.workflows.transition(APPLICATIONS, rid, "start_review", team["reviewer"])


def test_missing_required_field_refuses_the_transition_and_stores_nothing(services, team):
    rid = services.records.create(APPLICATIONS, applicant(), team["clerk"])
    with pytest.raises(ValidationFailed) as exc:
        services.workflows.transition(APPLICATIONS, rid, "reject", team["reviewer"], values={"rejection_reason": "  "})
    assert list(exc.value.field_errors) == ["rejection_reason"]
    with pytest.raises(ValidationFailed) as exc:
        services.workflows.transition(APPLICATIONS, rid, "reject", team["reviewer"], values={"rejection_reason": "dup", "notes": "sneaky"})
    assert list(exc.value.field_errors) == ["notes"]
    assert state_of(services, APPLICATIONS, rid) == "submitted"
    assert history_rows(services, APPLICATIONS, rid) == []
    services.workflows.transition(APPLICATIONS, rid, "reject", team["reviewer"], values={"rejection_reason": "重复申请"})
    row = services.queries.get(APPLICATIONS, rid, SYSTEM)
    assert row["workflow_state"] == "rejected" and row["rejection_reason"] == "重复申请" and row["reviewed_at"] is not None
    # rejection_reason is read-only in forms: only the transition writes it.
    with pytest.raises(ValidationFailed) as exc:
        services.records.update(APPLICATIONS, rid, {"rejection_reason": "changed"}, SYSTEM, expected_version=row["row_version"])
    assert "rejection_reason" in exc.value.field_errors


def test_a_guard_refuses_and_stores_nothing(services, team):
    rid = services.records.create(APPLICATIONS, applicant(birthday="2020-01-01"), team["clerk"])
    services.workflows.transition(APPLICATIONS, rid, "start_review", team["reviewer"])
    with pytest.raises(ValidationFailed) as exc:
        services.workflows.transition(APPLICATIONS, rid, "approve", team["reviewer"])
    assert "16" in exc.value.field_errors["_schema"][0]
    assert count(services, approval_request) == 0
    assert state_of(services, APPLICATIONS, rid) == "under_review"
    _, available = services.workflows.available(APPLICATIONS, rid, team["reviewer"])
    assert {a.transition.name: a.guard_ok for a in available} == {"approve": False, "reject": True}


def test_join_application_end_to_end_creates_exactly_one_member(services, team):
    members_before = row_count(services, "membership.member")
    rid = services.records.create(APPLICATIONS, applicant(id_number="11010519491231002X"), team["clerk"])
    services.workflows.transition(APPLICATIONS, rid, "start_review", team["reviewer"])
    result = services.workflows.transition(APPLICATIONS, rid, "approve", team["reviewer"], comment="ok")
    assert result.pending_approval and result.state == "under_review"
    assert state_of(services, APPLICATIONS, rid) == "under_review"
    tasks = pending_tasks(services, result.pending_approval)
    assert sorted(t["assignee_id"] for t in tasks) == sorted([team["boss1"].id, team["boss2"].id])
    # The reviewer cannot decide a manager's task; nothing moves while it waits.
    with pytest.raises(PermissionDenied):
        services.workflows.decide(tasks[0]["id"], "approve", team["reviewer"])
    with pytest.raises(TransitionNotAvailable):
        services.workflows.transition(APPLICATIONS, rid, "reject", team["reviewer"], values={"rejection_reason": "x"})
    assert [r["title"] for r in services.workflows.approvals(team["boss1"])] == ["李娜"]
    assert services.workflows.approval_count(team["boss2"]) == 1
    assert services.workflows.decide(tasks[0]["id"], "approve", team["boss1"], "欢迎") == "approved"
    assert state_of(services, APPLICATIONS, rid) == "approved"
    assert row_count(services, "membership.member") == members_before + 1
    page = services.queries.list("membership.member", SYSTEM, filter={"field": "mobile", "op": "eq", "value": "13900139000"})
    [member] = page.rows
    assert member["name"] == "李娜" and member["card_no"].startswith("VIP") and len(member["card_no"]) == 11
    assert member["join_channel"] == "online" and str(member["birthday"]) == "1990-05-01" and member["id_number"] == "11010519491231002X"
    assert services.workflows.approval_count(team["boss2"]) == 0  # the other manager's task closed
    with pytest.raises(TransitionNotAvailable):
        services.workflows.decide(tasks[1]["id"], "approve", team["boss2"])
    assert row_count(services, "membership.member") == members_before + 1
    events = [h["event"] for h in history_rows(services, APPLICATIONS, rid)]
    assert events == ["transitioned", "requested", "approved", "transitioned"]
    assert outbox_topics(services, APPLICATIONS, rid)[-1] == "workflow.transitioned"
    assert "approval_approve" in audit_actions(services, APPLICATIONS, rid)


def test_a_failing_action_rolls_back_the_whole_transition(services, team):
    # A member with the same mobile joins after the review started (so the duplicate check did not flag the application):
    # creating the member fails, so the application stays under review.
    rid = services.records.create(APPLICATIONS, applicant(), team["clerk"])
    services.workflows.transition(APPLICATIONS, rid, "start_review", team["reviewer"])
    services.records.create("membership.member", {"name": "旧会员", "mobile": "13900139000", "joined_on": "2024-01-01"}, SYSTEM)
    req = services.workflows.transition(APPLICATIONS, rid, "approve", team["reviewer"]).pending_approval
    task = pending_tasks(services, req)[0]
    with pytest.raises(ValidationFailed) as exc:
        services.workflows.decide(task["id"], "approve", team["boss1"])
    assert "mobile" in exc.value.field_errors
    assert state_of(services, APPLICATIONS, rid) == "under_review"
    assert request_status(services, req) == "pending" and len(pending_tasks(services, req)) == 2
    assert row_count(services, "membership.member") == 1
    with services.engine.connect() as conn:
        events = list(conn.execute(select(workflow_history.c.event).where(workflow_history.c.record_id == rid)).scalars())
    assert events == ["transitioned", "requested"]


@pytest.mark.postgres_only
def test_concurrent_approvals_of_one_application_create_one_member(services, team):
    """Both managers press "approve" at the same moment: the record's row lock lets one win; the other is refused."""
    import threading

    rid = services.records.create(APPLICATIONS, applicant(), team["clerk"])
    services.workflows.transition(APPLICATIONS, rid, "start_review", team["reviewer"])
    req = services.workflows.transition(APPLICATIONS, rid, "approve", team["reviewer"]).pending_approval
    tasks = {t["assignee_id"]: t["id"] for t in pending_tasks(services, req)}
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def approve(name: str) -> None:
        barrier.wait()
        try:
            outcomes[name] = services.workflows.decide(tasks[team[name].id], "approve", team[name])
        except Exception as exc:  # noqa: BLE001 - the loser's error is the assertion's subject
            outcomes[name] = exc

    threads = [threading.Thread(target=approve, args=(n,)) for n in ("boss1", "boss2")]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert sorted(type(o).__name__ for o in outcomes.values()) == ["TransitionNotAvailable", "str"]
    assert row_count(services, "membership.member") == 1
    assert state_of(services, APPLICATIONS, rid) == "approved"
    assert [h["event"] for h in history_rows(services, APPLICATIONS, rid)].count("transitioned") == 2


@pytest.mark.postgres_only
def test_concurrent_direct_transitions_move_the_state_once(services, team):
    import threading

    rid = services.records.create(APPLICATIONS, applicant(), team["clerk"])
    barrier = threading.Barrier(3)
    outcomes = []

    def reject() -> None:
        barrier.wait()
        try:
            services.workflows.transition(APPLICATIONS, rid, "reject", team["reviewer"], values={"rejection_reason": "dup"})
            outcomes.append("ok")
        except TransitionNotAvailable:
            outcomes.append("refused")

    threads = [threading.Thread(target=reject) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert sorted(outcomes) == ["ok", "refused", "refused"]
    assert [h["event"] for h in history_rows(services, APPLICATIONS, rid)] == ["transitioned"]
