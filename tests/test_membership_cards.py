"""Card actions (挂失 / 解挂 / 补卡 / 注销) and the template's roles: reasons required, history and audit kept, a lost
card refused by the ledger, store managers scoped to their store, auditors without personal fields."""
from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select

from crmkit.apps.membership import card_pool
from crmkit.apps.membership.card_actions import CardActionRefused, card_action
from crmkit.apps.membership.card_guard import CardBlocked
from crmkit.apps.membership.ledger import LedgerService
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import PermissionDenied, RecordNotFound, ValidationFailed
from crmkit.runtime.org.service import OrgService
from crmkit.runtime.packages import run_action
from crmkit.runtime.storage import platform_tables as pt

from ledger_support import make_member, make_plan
from membership_join_support import MEMBERS, people, store_unit_user


@pytest.fixture
def team(app, services):
    return people(app, services)


def history(services, member_id: int) -> list[tuple]:
    rows = services.queries.list("membership.card_history", SYSTEM, filter={"field": "member", "op": "eq", "value": member_id},
                                 sort=["id"], count="none").rows
    return [(r["action"], r["card_no"], r["new_card_no"], r["status_before"], r["status_after"], r["reason"]) for r in rows]


def audit(services, member_id: int) -> list[tuple]:
    a = pt.audit
    with services.engine.connect() as conn:
        return [(r.action, r.changes) for r in conn.execute(select(a.c.action, a.c.changes).where(
            a.c.entity == MEMBERS, a.c.record_id == member_id, a.c.action.like("card_%")).order_by(a.c.id))]


def test_report_lost_unfreeze_reissue_and_cancel_keep_history_and_audit(services, team):
    m = make_member(services)
    front = team["front"]
    assert card_action(services, front, m, "report_lost", "顾客来电挂失")["status"] == "lost"
    run_action(services, "membership", "card.unfreeze", front, {"member": m, "reason": "找回原卡"})
    done = card_action(services, front, m, "reissue", "卡片磨损")
    assert done == {"status": "active", "old_card_no": "VIP00000001", "card_no": "VIP00000002"}
    card_action(services, front, m, "cancel", "本人申请注销")
    row = services.queries.get(MEMBERS, m, SYSTEM)
    assert row["status"] == "cancelled" and row["card_no"] == "VIP00000002"
    assert history(services, m) == [
        ("report_lost", "VIP00000001", None, "active", "lost", "顾客来电挂失"),
        ("unfreeze", "VIP00000001", None, "lost", "active", "找回原卡"),
        ("reissue", "VIP00000001", "VIP00000002", "active", "active", "卡片磨损"),
        ("cancel", "VIP00000002", None, "active", "cancelled", "本人申请注销"),
    ]
    events = audit(services, m)
    assert [e[0] for e in events] == ["card_report_lost", "card_unfreeze", "card_reissue", "card_cancel"]
    assert events[2][1]["reason"] == "卡片磨损" and events[2][1]["card_no"] == ["VIP00000001", "VIP00000002"]
    with services.engine.connect() as conn:  # the record service's own update entries carry the field changes
        updates = conn.execute(select(pt.audit.c.changes).where(pt.audit.c.entity == MEMBERS, pt.audit.c.record_id == m,
                                                                pt.audit.c.action == "update").order_by(pt.audit.c.id)).scalars().all()
    assert updates[0]["status"] == ["active", "lost"] and updates[2]["card_no"] == ["VIP00000001", "VIP00000002"]


@pytest.mark.parametrize("action", ["report_lost", "unfreeze", "reissue", "cancel"])
def test_every_card_action_needs_a_reason_and_stores_nothing_without_one(services, team, action):
    m = make_member(services)
    if action == "unfreeze":
        card_action(services, SYSTEM, m, "report_lost", "挂失")
    before = services.queries.get(MEMBERS, m, SYSTEM)
    hist = history(services, m)
    with pytest.raises(ValidationFailed) as exc:
        card_action(services, team["front"], m, action, "   ")
    assert list(exc.value.field_errors) == ["reason"]
    after = services.queries.get(MEMBERS, m, SYSTEM)
    assert (after["status"], after["card_no"], after["row_version"]) == (before["status"], before["card_no"], before["row_version"])
    assert history(services, m) == hist


def test_actions_not_allowed_in_the_card_status_are_refused(services, team):
    m = make_member(services)
    with pytest.raises(CardActionRefused):
        card_action(services, team["front"], m, "unfreeze", "没有挂失")
    card_action(services, team["front"], m, "cancel", "注销")
    for action in ("report_lost", "reissue", "cancel"):
        with pytest.raises(CardActionRefused):
            card_action(services, team["front"], m, action, "已注销")
    with pytest.raises(ValidationFailed):
        card_action(services, team["front"], m, "shred", "?")
    with pytest.raises(ValidationFailed) as exc:  # the template's roles cannot edit the status directly
        services.records.update(MEMBERS, m, {"status": "active"}, team["front"],
                                expected_version=services.queries.get(MEMBERS, m, SYSTEM)["row_version"])
    assert "status" in exc.value.field_errors
    assert services.queries.get(MEMBERS, m, SYSTEM)["status"] == "cancelled"


def test_card_actions_need_update_rights(services, team):
    m = make_member(services)
    for who in ("auditor", "marketer"):
        with pytest.raises(PermissionDenied):
            card_action(services, team[who], m, "report_lost", "挂失")
    assert services.queries.get(MEMBERS, m, SYSTEM)["status"] == "active"


def test_a_lost_card_cannot_earn_or_redeem_points_until_unfrozen(services, team):
    make_plan(services, starts_on="2000-01-01", ends_on="2099-12-31")
    m = make_member(services)
    ledger = LedgerService(services.engine)
    ledger.earn(m, 500, key="seed", actor=SYSTEM)
    card_action(services, team["front"], m, "report_lost", "挂失")
    with pytest.raises(CardBlocked):
        ledger.earn(m, 10, key="while-lost", actor=SYSTEM)
    with pytest.raises(CardBlocked):
        ledger.redeem(m, 10, key="spend-lost", actor=SYSTEM)
    with pytest.raises(CardBlocked):  # an order for the member: its points posting is refused, and the order with it
        services.records.create("membership.order", {"member": m, "kind": "consumption", "amount": "100", "payment_status": "paid",
                                                     "ordered_at": "2026-06-01T10:00:00+08:00"}, SYSTEM)
    assert ledger.balances(m)["reward"]["wallet"] == 500
    assert services.queries.list("membership.order", SYSTEM, count="exact").total == 0
    card_action(services, team["front"], m, "unfreeze", "找回")
    assert ledger.earn(m, 10, key="after", actor=SYSTEM).created


def test_a_replayed_posting_is_answered_with_its_first_entry_after_the_card_is_lost(services, team):
    """Idempotency comes first: a client retrying a posting that went through gets the entry, not a refusal."""
    m = make_member(services)
    ledger = LedgerService(services.engine)
    earned = ledger.earn(m, 300, key="order:1", actor=SYSTEM)
    spent = ledger.redeem(m, 100, key="gift:1", actor=SYSTEM)
    card_action(services, team["front"], m, "report_lost", "挂失")
    assert ledger.earn(m, 300, key="order:1", actor=SYSTEM) == replace(earned, created=False)
    assert ledger.redeem(m, 100, key="gift:1", actor=SYSTEM) == replace(spent, created=False)
    with pytest.raises(CardBlocked):
        ledger.earn(m, 300, key="order:2", actor=SYSTEM)
    assert ledger.balances(m)["reward"]["wallet"] == 200


def test_reissue_in_pool_mode_draws_a_pool_card_or_a_named_special_number(services, team):
    m = make_member(services)
    card_pool.generate_batch(services.engine, prefix="R", start=1, count=2, digits=4, actor_id=None)
    card_pool.add_special(services.engine, "66666666", actor_id=None)
    card_pool.set_card_mode(services.engine, "pool", actor_id=None)
    assert card_action(services, team["front"], m, "reissue", "换卡")["card_no"] == "R0001"
    assert run_action(services, "membership", "card.reissue", team["front"], {"member": m, "reason": "要靓号", "card_no": "66666666"})["card_no"] == "66666666"
    with pytest.raises(ValidationFailed):
        card_action(services, team["front"], m, "reissue", "再换", card_no="66666666")  # taken now
    assert [h[1:3] for h in history(services, m)] == [("VIP00000001", "R0001"), ("R0001", "66666666")]


def test_roles_exist_with_their_permissions_and_scopes(services):
    from crmkit.runtime.permissions.tables import field_rule, row_scope
    from crmkit.runtime.org.tables import ab_role

    with services.engine.connect() as conn:
        roles = dict(conn.execute(select(ab_role.c.name, ab_role.c.id)).all())
        scopes = {(r.role_id, r.entity): r.scope for r in conn.execute(select(row_scope))}
        fields = {(r.role_id, r.entity, r.field): r.access for r in conn.execute(select(field_rule))}
    assert {"Front Desk", "Membership Reviewer", "Membership Manager", "Marketing", "Store Manager", "Auditor"} <= set(roles)
    sm = roles["Store Manager"]
    assert {e: s for (r, e), s in scopes.items() if r == sm} == {"membership.member": "org_subtree", "membership.application": "org_subtree",
                                                                "membership.order": "org_subtree"}
    assert fields[(roles["Auditor"], "membership.member", "mobile")] == "masked"
    assert fields[(roles["Front Desk"], "membership.member", "status")] == "read_only"


def test_store_manager_sees_only_their_store_and_auditor_sees_personal_fields_masked(app, services, team):
    org = OrgService(services.engine)
    north, south = org.create_unit(SYSTEM, name="北区门店", code="N1"), org.create_unit(SYSTEM, name="南区门店", code="S1")

    mine = services.records.create(MEMBERS, {"name": "北客", "mobile": "13100000001", "joined_on": "2025-01-01"}, replace(SYSTEM, org_unit_id=north))
    other = services.records.create(MEMBERS, {"name": "南客", "mobile": "13100000002", "joined_on": "2025-01-01"}, replace(SYSTEM, org_unit_id=south))
    boss = store_unit_user(app, services, "northboss", "Store Manager", north)
    seen = services.queries.list(MEMBERS, boss, count="exact")
    assert [r["id"] for r in seen.rows] == [mine] and seen.total == 1
    with pytest.raises(RecordNotFound):
        services.queries.get(MEMBERS, other, boss)
    with pytest.raises(RecordNotFound):
        card_action(services, boss, other, "report_lost", "不是我店的")
    card_action(services, boss, mine, "report_lost", "本店挂失")
    auditor = team["auditor"]
    row = services.queries.get(MEMBERS, mine, auditor)
    assert row["name"] == "北客" and row["mobile"] == "131****0001" and "id_number" in row
    with pytest.raises(PermissionDenied):
        services.records.update(MEMBERS, mine, {"notes": "x"}, auditor, expected_version=row["row_version"])
