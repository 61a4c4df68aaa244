"""The alliance roles: a manager approves merchants, finance settles, merchant staff confirm their own statement only."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from sqlalchemy import select

from alliance_support import TODAY, make_merchant
from conftest import login
from crmkit.apps.alliance.roles import ensure_roles
from crmkit.apps.alliance.settlement import create_statement
from crmkit.apps.alliance.staff import FINANCE_ROLE, MANAGER_ROLE
from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.errors import PermissionDenied, RecordNotFound
from crmkit.runtime.org.grants import resolve_grants
from crmkit.runtime.packages import run_action
from test_alliance_portal import PASSWORD, add_staff


def actor_of(services, uid: int, name: str) -> Actor:
    with services.engine.connect() as conn:
        g = resolve_grants(conn, uid)
    return Actor(id=uid, username=name, is_admin=False, permissions=g.permissions, org_unit_id=g.org_unit_id, role_ids=g.role_ids)


def add_user(app, name: str, role: str) -> int:
    with app.app_context():
        sm = app.appbuilder.sm
        uid = sm.add_user(name, name, "User", f"{name}@example.com", sm.find_role(role), PASSWORD).id
        app.extensions["sqlalchemy"].session.remove()
    return uid


def test_roles_setup_and_what_each_role_may_do(make_app):
    app = make_app("alliance")
    s = app.extensions["crmkit"]
    # the install created the roles with their grants: nothing to run after the first start
    from crmkit.runtime.org.tables import ab_role
    from crmkit.runtime.permissions.admin import PermissionAdmin

    with s.engine.connect() as conn:
        installed = {n: i for i, n in conn.execute(select(ab_role.c.id, ab_role.c.name).where(ab_role.c.name.in_([MANAGER_ROLE, FINANCE_ROLE, "Merchant Staff"])))}
    assert set(installed) == {MANAGER_ROLE, FINANCE_ROLE, "Merchant Staff"}
    perms = PermissionAdmin(s.engine, s.policy.rules, s.store.catalog)
    before = perms.set_actions(installed[MANAGER_ROLE], s.store.catalog().entity("alliance.offer"), ["read"], actor_id=None)
    assert before["removed"]  # the manager held more than read on offers
    with pytest.raises(PermissionDenied):
        run_action(s, "alliance", "roles.setup", Actor(id=5, username="x"), {})
    out = run_action(s, "alliance", "roles.setup", SYSTEM, {})  # puts the template's grants back
    assert out["roles"] == installed
    assert ensure_roles(s, SYSTEM)["roles"] == out["roles"]  # idempotent
    again = perms.set_actions(installed[MANAGER_ROLE], s.store.catalog().entity("alliance.offer"), sorted(before["removed"]) + ["read"], actor_id=None)
    assert again == {"added": [], "removed": []}
    manager = actor_of(s, add_user(app, "mgr", MANAGER_ROLE), "mgr")
    finance = actor_of(s, add_user(app, "fin", FINANCE_ROLE), "fin")

    mid = s.records.create("alliance.merchant", {"name": "新商家", "code": "NEW", "category": "retail"}, manager)
    with pytest.raises(PermissionDenied):
        s.workflows.transition("alliance.merchant", mid, "approve", finance, {"contract_start": TODAY.isoformat(),
                                                                               "contract_end": (TODAY + dt.timedelta(days=90)).isoformat()})
    s.workflows.transition("alliance.merchant", mid, "approve", manager, {"contract_start": TODAY.isoformat(),
                                                                          "contract_end": (TODAY + dt.timedelta(days=90)).isoformat()})
    assert s.queries.get("alliance.merchant", mid, manager)["status"] == "formal"

    a, b = make_merchant(s, "A"), make_merchant(s, "B")
    add_staff(app, s, a, "clerk_a")
    clerk = actor_of(s, login_id(app, "clerk_a"), "clerk_a")
    sa = create_statement(s, a, TODAY.replace(day=1), TODAY, actor=finance)
    sb = create_statement(s, b, TODAY.replace(day=1), TODAY, actor=finance)
    with pytest.raises(RecordNotFound):
        s.workflows.transition("alliance.settlement", sb, "confirm", clerk)  # B's statement is outside A's row scope
    s.workflows.transition("alliance.settlement", sa, "confirm", clerk)
    with pytest.raises(PermissionDenied):
        s.workflows.transition("alliance.settlement", sa, "settle", manager)
    s.workflows.transition("alliance.settlement", sa, "settle", finance)
    assert s.queries.get("alliance.settlement", sa, finance)["workflow_state"] == "settled"
    from crmkit.apps.alliance.offers import redeem_offer, reverse_redemption
    from alliance_support import make_member, make_offer

    r = redeem_offer(s, merchant_id=a, offer_id=make_offer(s, a), member_id=make_member(s, 1), actor=SYSTEM, key="r1", bill=D("10"))
    with pytest.raises(PermissionDenied):
        reverse_redemption(s, r.redemption_id, actor=finance, reason="not finance's job")
    reverse_redemption(s, r.redemption_id, actor=manager, reason="顾客取消")
    assert s.queries.get("alliance.redemption", r.redemption_id, manager)["status"] == "reversed"
    c = app.test_client()
    login(c, "fin", PASSWORD)
    assert c.get("/e/alliance.settlement/").status_code == 200


def login_id(app, username: str) -> int:
    with app.app_context():
        uid = app.appbuilder.sm.find_user(username=username).id
        app.extensions["sqlalchemy"].session.remove()
    return uid
