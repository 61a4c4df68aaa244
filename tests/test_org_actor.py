"""Actor resolution: org unit, roles = direct ∪ posts' roles, permissions from all of them, in one SQL statement."""
from __future__ import annotations

import threading

from sqlalchemy import event

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.org.grants import resolve_grants
from crmkit.runtime.web.actors import actor_for_user

from conftest import csrf_from, login
from org_support import PASSWORD, add_role, add_user, build_tree, org

MEMBERS_API = "/api/v1/records/membership.member"
READ_MEMBERS = ("read", "entity:membership.member")
CREATE_MEMBERS = ("create", "entity:membership.member")


def actor_of(app, user_id):
    with app.test_request_context():
        user = app.appbuilder.sm.get_user_by_id(user_id)
        actor = actor_for_user(user, "en")
        app.extensions["sqlalchemy"].session.remove()
        return actor


def logged_in(app, username):
    c = app.test_client()
    login(c, username, PASSWORD)
    return c


def test_roles_come_directly_and_through_posts(app):
    svc = org(app)
    tree = build_tree(svc)
    reader = add_role(app, "Reader", [READ_MEMBERS])
    creator = add_role(app, "Creator", [CREATE_MEMBERS])
    add_role(app, "Unused", [("delete", "entity:membership.member")])
    post_id = svc.create_post(SYSTEM, name="前台", code="front-desk", org_unit_id=tree["sh"], role_ids=[creator])
    uid = add_user(app, "li", ["Reader"])
    svc.assign_user(SYSTEM, uid, org_unit_id=tree["sh_sales"], post_ids=[post_id], role_ids=[reader])
    actor = actor_of(app, uid)
    assert actor.id == uid and actor.username == "li" and not actor.is_admin
    assert actor.org_unit_id == tree["sh_sales"]
    assert actor.role_ids == frozenset({reader, creator})
    assert actor.permissions == frozenset({READ_MEMBERS, CREATE_MEMBERS})
    assert actor.locale == "en"


def test_a_user_with_only_a_post_gets_its_permissions_over_http(app):
    svc = org(app)
    tree = build_tree(svc)
    reader = add_role(app, "Reader", [READ_MEMBERS, CREATE_MEMBERS])
    uid = add_user(app, "wang")  # no direct roles at all
    c = logged_in(app, "wang")
    resp = c.get(MEMBERS_API)
    assert resp.status_code == 403 and resp.get_json()["code"] == "forbidden"
    post_id = svc.create_post(SYSTEM, name="会员专员", code="member-clerk", role_ids=[reader])
    svc.assign_user(SYSTEM, uid, org_unit_id=tree["bj"], post_ids=[post_id])
    token = csrf_from(c.get("/home").get_data(as_text=True))
    created = c.post(MEMBERS_API, json={"name": "周杰", "mobile": "13700000002", "joined_on": "2024-05-01"}, headers={"X-CSRFToken": token})
    assert created.status_code == 201, created.get_data(as_text=True)
    body = c.get(MEMBERS_API).get_json()
    assert [r["name"] for r in body["items"]] == ["周杰"]
    # The record belongs to the creator's org unit, which the creator cannot forge.
    assert body["items"][0]["org_unit_id"] == tree["bj"]
    # Taking the post away takes the permission away on the next request.
    svc.assign_user(SYSTEM, uid, org_unit_id=tree["bj"], post_ids=[])
    assert c.get(MEMBERS_API).status_code == 403


def test_a_post_carrying_the_admin_role_makes_an_admin(app):
    svc = org(app)
    admin_role = dict((n, i) for i, n in svc.roles())["Admin"]
    post_id = svc.create_post(SYSTEM, name="IT 管理员", code="it-admin", role_ids=[admin_role])
    uid = add_user(app, "ops")
    assert actor_of(app, uid).is_admin is False
    svc.assign_user(SYSTEM, uid, post_ids=[post_id])
    actor = actor_of(app, uid)
    assert actor.is_admin is True and admin_role in actor.role_ids
    assert logged_in(app, "ops").get("/admin/org/").status_code == 200


def test_users_without_unit_or_roles_resolve_without_error(app):
    uid = add_user(app, "nobody")
    actor = actor_of(app, uid)
    assert (actor.org_unit_id, actor.role_ids, actor.permissions, actor.is_admin) == (None, frozenset(), frozenset(), False)
    c = logged_in(app, "nobody")
    home = c.get("/home")
    assert home.status_code == 200
    assert c.get(MEMBERS_API).status_code == 403


def test_an_inactive_user_resolves_to_no_actor(app):
    uid = add_user(app, "gone", ["Admin"])
    with app.app_context():
        sm = app.appbuilder.sm
        user = sm.get_user_by_id(uid)
        user.active = False
        sm.update_user(user)
        app.extensions["sqlalchemy"].session.remove()
    assert actor_of(app, uid) is None


def test_grants_are_read_in_one_statement(app):
    svc = org(app)
    tree = build_tree(svc)
    r1 = add_role(app, "R1", [READ_MEMBERS])
    r2 = add_role(app, "R2", [CREATE_MEMBERS, ("read", "entity:membership.level")])
    p = svc.create_post(SYSTEM, name="P", code="p", role_ids=[r2])
    uid = add_user(app, "stmt", ["R1"])
    svc.assign_user(SYSTEM, uid, org_unit_id=tree["east"], post_ids=[p], role_ids=[r1])
    engine = app.extensions["crmkit"].engine
    statements = []
    me = threading.get_ident()

    def count(conn, cursor, statement, *args):
        if threading.get_ident() == me:  # not the background audit sealer's
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.connect() as conn:
            grants = resolve_grants(conn, uid)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1, statements
    assert grants.org_unit_id == tree["east"] and grants.role_ids == {r1, r2}
    assert grants.permissions == {READ_MEMBERS, CREATE_MEMBERS, ("read", "entity:membership.level")}
    with engine.connect() as conn:
        assert resolve_grants(conn, 987654) is None


def test_admin_permissions_are_not_expanded(app):
    """The admin role may do everything; its long permission list is not loaded per request."""
    with app.extensions["crmkit"].engine.connect() as conn:
        admin_id = 1
        grants = resolve_grants(conn, admin_id)
    assert "Admin" in grants.role_names and grants.permissions == frozenset()
