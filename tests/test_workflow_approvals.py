"""Multi-step approvals: approvers by post (岗位) and by org manager of the owner, sequential steps,
return-for-changes and resubmission, hand-over of one task, and delegation for a period."""
from __future__ import annotations

import datetime as dt

import pytest

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.db import write_transaction
from crmkit.runtime.errors import PermissionDenied, ValidationFailed
from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.workflow import TransitionNotAvailable
from crmkit.runtime.workflow.people import managers_of, set_unit_managers

from org_support import add_role, add_user, build_tree, org
from workflow_support import actor_of, audit_actions, history_rows, pending_tasks, request_status, state_of

LEVELS = "membership.level"
L = lambda zh, en: {"zh": zh, "en": en}  # noqa: E731

LEVEL_WORKFLOW = {
    "entity": LEVELS, "name": "level_release", "label": L("等级发布", "Level release"),
    "states": [
        {"name": "draft", "label": L("草稿", "Draft"), "initial": True},
        {"name": "active", "label": L("已启用", "Active"), "color": "#10b981"},
        {"name": "retired", "label": L("已停用", "Retired"), "final": True},
    ],
    "transitions": [
        {"name": "activate", "label": L("启用", "Activate"), "from": "draft", "to": "active", "allowed": {"owner": True},
         "approval": {"mode": "sequential", "steps": [{"post": "qa", "label": L("质检", "QA")}, {"manager": True}]}},
        {"name": "retire", "label": L("停用", "Retire"), "from": "active", "to": "retired", "allowed": {"users": ["req"]}, "comment": "required"},
    ],
}


@pytest.fixture
def chain(app, services):
    """req (owner, in 上海销售部), qa1/qa2 (post qa), boss (manager of 上海公司), deputy."""
    svc = org(app)
    units = build_tree(svc)
    editor = add_role(app, "LevelEditor", [(a, "entity:membership.level") for a in ("read", "create", "update")])
    viewer = add_role(app, "LevelViewer", [("read", "entity:membership.level")])
    ids = {"req": add_user(app, "req", ["LevelEditor"]), "qa1": add_user(app, "qa1", ["LevelViewer"]), "qa2": add_user(app, "qa2", ["LevelViewer"]),
           "boss": add_user(app, "boss", ["LevelViewer"]), "deputy": add_user(app, "deputy", ["LevelViewer"])}
    qa = svc.create_post(SYSTEM, name="质检专员", code="qa", org_unit_id=units["sh"])
    svc.assign_user(SYSTEM, ids["req"], org_unit_id=units["sh_sales"], role_ids=[editor])
    svc.assign_user(SYSTEM, ids["qa1"], org_unit_id=units["sh"], post_ids=[qa], role_ids=[viewer])
    svc.assign_user(SYSTEM, ids["qa2"], org_unit_id=units["sh"], post_ids=[qa], role_ids=[viewer])
    svc.assign_user(SYSTEM, ids["boss"], org_unit_id=units["sh"], role_ids=[viewer])
    with write_transaction(services.engine) as conn:
        set_unit_managers(conn, units["sh"], [ids["boss"]])
    services.store.save([RawDocument("workflow", "membership", LEVEL_WORKFLOW, "test/workflows/level.json")])
    people = {name: actor_of(services, uid, name) for name, uid in ids.items()}
    level = services.records.create(LEVELS, {"name": "铂金", "code": "PLAT", "level_value": 40}, people["req"])
    return people, level


def test_the_org_manager_of_the_owner_is_found_up_the_tree(services, chain):
    people, _ = chain
    with services.engine.connect() as conn:
        assert managers_of(conn, people["req"].id) == [people["boss"].id]  # 上海销售部 has none: its parent 上海公司 has boss
        assert managers_of(conn, people["boss"].id) == []  # the boss is not their own manager; no one above


def test_sequential_chain_with_return_for_changes_and_delegation_for_a_period(services, chain):
    people, level = chain
    assert state_of(services, LEVELS, level) == "draft"
    with pytest.raises(PermissionDenied):  # only the owner may ask
        services.workflows.transition(LEVELS, level, "activate", people["qa1"])
    first = services.workflows.transition(LEVELS, level, "activate", people["req"], comment="请审核").pending_approval
    assert sorted(t["assignee_id"] for t in pending_tasks(services, first)) == sorted([people["qa1"].id, people["qa2"].id])

    # Return for changes needs a comment; then the request goes back to the requester's "My tasks".
    task = pending_tasks(services, first)[0]
    with pytest.raises(ValidationFailed) as exc:
        services.workflows.decide(task["id"], "return", people["qa1"], "")
    assert "comment" in exc.value.field_errors
    assert services.workflows.decide(task["id"], "return", people["qa1"], "等级值太低") == "returned"
    assert request_status(services, first) == "returned" and pending_tasks(services, first) == []
    assert state_of(services, LEVELS, level) == "draft"
    [todo] = [t for t in services.workflows.tasks(people["req"]) if t["kind"] == "returned"]
    assert todo["record_id"] == level and todo["comment"] == "等级值太低"

    # The requester fixes the record and asks again: a new request; the returned one is closed.
    services.records.update(LEVELS, level, {"level_value": 45}, people["req"], expected_version=1)
    second = services.workflows.transition(LEVELS, level, "activate", people["req"]).pending_approval
    assert request_status(services, first) == "resubmitted"
    assert [t for t in services.workflows.tasks(people["req"]) if t["kind"] == "returned"] == []

    # Step 1 (post qa): either holder approves; step 2 goes to the owner's org manager.
    t2 = next(t for t in pending_tasks(services, second) if t["assignee_id"] == people["qa2"].id)
    assert services.workflows.decide(t2["id"], "approve", people["qa2"]) == "pending"
    [boss_task] = pending_tasks(services, second)
    assert (boss_task["assignee_id"], boss_task["step"]) == (people["boss"].id, 1)
    assert state_of(services, LEVELS, level) == "draft"

    # The deputy cannot decide for the boss until the boss delegates for a period that includes now.
    with pytest.raises(PermissionDenied):
        services.workflows.decide(boss_task["id"], "approve", people["deputy"])
    now = dt.datetime.now(dt.timezone.utc)
    services.workflows.add_delegation(people["boss"], people["qa1"].id, now - dt.timedelta(days=3), now - dt.timedelta(days=1))  # over
    with pytest.raises(PermissionDenied):
        services.workflows.decide(boss_task["id"], "approve", people["qa1"])
    services.workflows.add_delegation(people["boss"], people["deputy"].id, now - dt.timedelta(hours=1), now + dt.timedelta(days=1))
    assert [r["id"] for r in services.workflows.approvals(people["deputy"])] == [boss_task["id"]]
    assert services.workflows.approval_count(people["deputy"]) == 1
    assert services.workflows.decide(boss_task["id"], "approve", people["deputy"], "代批") == "approved"

    assert state_of(services, LEVELS, level) == "active"
    events = [(h["event"], h["actor_id"]) for h in history_rows(services, LEVELS, level)]
    assert events == [("requested", people["req"].id), ("returned", people["qa1"].id), ("requested", people["req"].id),
                      ("approved", people["qa2"].id), ("approved", people["deputy"].id), ("transitioned", people["deputy"].id)]
    actions = audit_actions(services, LEVELS, level)
    assert actions.count("approval_return") == 1 and actions.count("approval_approve") == 2 and actions[-1] == "transition"

    # A required comment, and a named user.
    with pytest.raises(ValidationFailed) as exc:
        services.workflows.transition(LEVELS, level, "retire", people["req"])
    assert "comment" in exc.value.field_errors
    with pytest.raises(PermissionDenied):
        services.workflows.transition(LEVELS, level, "retire", people["boss"], comment="x")
    services.workflows.transition(LEVELS, level, "retire", people["req"], comment="不再使用")
    assert state_of(services, LEVELS, level) == "retired"


def test_a_task_handed_over_is_decided_by_the_new_assignee_only(services, chain):
    people, level = chain
    req = services.workflows.transition(LEVELS, level, "activate", people["req"]).pending_approval
    t1 = next(t for t in pending_tasks(services, req) if t["assignee_id"] == people["qa1"].id)
    with pytest.raises(ValidationFailed):
        services.workflows.delegate_task(t1["id"], people["qa1"], people["qa1"].id)  # not to oneself
    new_id = services.workflows.delegate_task(t1["id"], people["qa1"], people["deputy"].id, "我休假")
    with pytest.raises(TransitionNotAvailable):
        services.workflows.decide(t1["id"], "approve", people["qa1"])
    with pytest.raises(PermissionDenied):
        services.workflows.decide(new_id, "approve", people["qa1"])
    assert services.workflows.decide(new_id, "reject", people["deputy"], "资料不全") == "rejected"
    assert request_status(services, req) == "rejected" and state_of(services, LEVELS, level) == "draft"
    assert [h["event"] for h in history_rows(services, LEVELS, level)] == ["requested", "delegated", "rejected"]
    # After a rejection the owner may ask again.
    assert services.workflows.transition(LEVELS, level, "activate", people["req"]).pending_approval


def test_no_approver_for_a_step_refuses_the_request(services, chain):
    people, level = chain
    with write_transaction(services.engine) as conn:
        from crmkit.runtime.org.tables import user_post
        conn.execute(user_post.delete())
    with pytest.raises(ValidationFailed) as exc:
        services.workflows.transition(LEVELS, level, "activate", people["req"])
    assert "approve step 1" in exc.value.field_errors["_schema"][0]
    assert history_rows(services, LEVELS, level) == []


def test_any_of_mode_completes_on_the_first_approval(services, chain):
    people, level = chain
    body = {**LEVEL_WORKFLOW, "transitions": [{**LEVEL_WORKFLOW["transitions"][0],
                                               "approval": {"mode": "any", "steps": [{"post": "qa"}, {"user": "boss"}]}}]}
    services.store.save([RawDocument("workflow", "membership", body, "test/workflows/level.json")])
    req = services.workflows.transition(LEVELS, level, "activate", people["req"]).pending_approval
    tasks = pending_tasks(services, req)
    assert sorted((t["step"], t["assignee_id"]) for t in tasks) == sorted(
        [(0, people["qa1"].id), (0, people["qa2"].id), (1, people["boss"].id)])
    boss_task = next(t for t in tasks if t["assignee_id"] == people["boss"].id)
    assert services.workflows.decide(boss_task["id"], "approve", people["boss"]) == "approved"
    assert state_of(services, LEVELS, level) == "active"
    assert pending_tasks(services, req) == [] and services.workflows.approval_count(people["qa1"]) == 0


def test_a_pending_approval_can_be_decided_after_its_approval_is_removed_from_the_workflow(services, chain):
    """Editing the workflow so the transition no longer needs approval must not strand open requests: the pending
    decision completes the transition (it used to fail with AttributeError on the missing approval)."""
    people, level = chain
    request_id = services.workflows.transition(LEVELS, level, "activate", people["req"]).pending_approval
    task = pending_tasks(services, request_id)[0]
    without_approval = {**LEVEL_WORKFLOW, "transitions": [{k: v for k, v in t.items() if k != "approval"} for t in LEVEL_WORKFLOW["transitions"]]}
    services.store.save([RawDocument("workflow", "membership", without_approval, "test/workflows/level.json")])
    assert services.workflows.decide(task["id"], "approve", people[next(n for n in ("qa1", "qa2") if people[n].id == task["assignee_id"])]) == "approved"
    assert request_status(services, request_id) == "approved" and pending_tasks(services, request_id) == []
    assert state_of(services, LEVELS, level) == "active"
