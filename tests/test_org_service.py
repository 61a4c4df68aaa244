"""OrgService: the org tree with materialized paths, posts carrying roles, user assignment, subtree helpers."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import RecordNotFound, ValidationFailed
from crmkit.runtime.org.tables import ab_user_role, user_org, user_post
from crmkit.runtime.org.tree import ancestor_ids, org_subtree_ids, path_prefix_clause, subtree_ids_select
from crmkit.runtime.org.tables import org_unit

from org_support import add_role, add_user, assert_paths_consistent, audit_actions, build_tree, org, paths, table_counts


@pytest.fixture
def svc(app):
    return org(app)


@pytest.fixture
def tree(svc):
    return build_tree(svc)


def test_units_get_materialized_paths_at_any_depth(app, svc, tree):
    p = paths(app)
    assert p[tree["group"]] == (None, f"/{tree['group']}/")
    assert p[tree["sh_sales"]][1] == f"/{tree['group']}/{tree['east']}/{tree['sh']}/{tree['sh_sales']}/"
    deeper = svc.create_unit(SYSTEM, name="一组", code="sh-sales-1", kind="department", parent_id=tree["sh_sales"])
    team = svc.create_unit(SYSTEM, name="一组 A 班", code="sh-sales-1a", kind="department", parent_id=deeper)
    assert svc.unit(team).depth == 5
    assert ancestor_ids(svc.unit(team).path) == [tree["group"], tree["east"], tree["sh"], tree["sh_sales"], deeper, team]
    assert_paths_consistent(app)
    # Tree order: parents before children, siblings by name.
    order = [u.code for u in svc.units()]
    assert order.index("hx") < order.index("east") < order.index("sh") < order.index("sh-sales") < order.index("sh-sales-1")


def test_subtree_helpers_cover_the_unit_and_its_descendants_only(app, tree):
    engine = app.extensions["crmkit"].engine
    with engine.connect() as c:
        assert org_subtree_ids(c, tree["east"]) == [tree["east"], tree["sh"], tree["sh_sales"]]
        assert set(org_subtree_ids(c, tree["group"])) == set(tree.values())
        assert org_subtree_ids(c, tree["bj"]) == [tree["bj"]]
        assert org_subtree_ids(c, 987654) == []
        # The SELECT works as a subquery (what row scopes use), in one statement.
        in_east = c.execute(select(org_unit.c.code).where(org_unit.c.id.in_(subtree_ids_select(tree["east"]))).order_by(org_unit.c.code)).scalars().all()
        assert in_east == ["east", "sh", "sh-sales"]
        east_path = c.execute(select(org_unit.c.path).where(org_unit.c.id == tree["east"])).scalar_one()
        assert set(c.execute(select(org_unit.c.id).where(path_prefix_clause(east_path))).scalars()) == {tree["east"], tree["sh"], tree["sh_sales"]}
    with pytest.raises(ValueError):
        path_prefix_clause("/1/%")


def test_sibling_ids_sharing_a_prefix_are_not_in_each_others_subtree(app, svc):
    # Ids 1 and 11, 12…: '/1/' must not match '/11/'.
    units = [svc.create_unit(SYSTEM, name=f"U{i}", code=f"u{i}", kind="company") for i in range(12)]
    with app.extensions["crmkit"].engine.connect() as c:
        for uid in units:
            assert org_subtree_ids(c, uid) == [uid]


def test_moving_a_unit_repaths_its_whole_subtree(app, svc, tree):
    moved = svc.move_unit(SYSTEM, tree["sh"], tree["north"])
    assert moved == 2  # 上海公司 and 上海销售部
    p = paths(app)
    assert p[tree["sh"]] == (tree["north"], f"/{tree['group']}/{tree['north']}/{tree['sh']}/")
    assert p[tree["sh_sales"]][1] == f"/{tree['group']}/{tree['north']}/{tree['sh']}/{tree['sh_sales']}/"
    assert p[tree["east"]][1] == f"/{tree['group']}/{tree['east']}/"  # the old parent is untouched
    with app.extensions["crmkit"].engine.connect() as c:
        assert org_subtree_ids(c, tree["east"]) == [tree["east"]]
        assert set(org_subtree_ids(c, tree["north"])) == {tree["north"], tree["bj"], tree["sh"], tree["sh_sales"]}
    # To the top level and back.
    svc.move_unit(SYSTEM, tree["sh"], None)
    assert paths(app)[tree["sh_sales"]][1] == f"/{tree['sh']}/{tree['sh_sales']}/"
    svc.move_unit(SYSTEM, tree["sh"], tree["east"])
    assert_paths_consistent(app)
    moves = [a for a in audit_actions(app) if a[0] == "org_unit_move"]
    assert len(moves) == 3 and moves[0][2] == tree["sh"] and moves[0][3]["units_moved"] == 2


def test_a_unit_cannot_move_into_its_own_subtree(app, svc, tree):
    before = paths(app)
    for target in (tree["east"], tree["sh"], tree["sh_sales"]):
        with pytest.raises(ValidationFailed) as exc:
            svc.move_unit(SYSTEM, tree["east"], target)
        assert "parent_id" in exc.value.field_errors
        assert "sub-units" in str(exc.value.field_errors["parent_id"][0])
    assert paths(app) == before
    with pytest.raises(ValidationFailed) as exc:
        svc.move_unit(SYSTEM, tree["east"], 99999)
    assert "no org unit with id 99999" in str(exc.value.field_errors["parent_id"][0])
    with pytest.raises(RecordNotFound):
        svc.move_unit(SYSTEM, 99999, tree["east"])
    assert paths(app) == before


@pytest.mark.parametrize("fields, bad", [
    ({"name": "", "code": "x1", "kind": "department"}, "name"),
    ({"name": "   ", "code": "x1", "kind": "department"}, "name"),
    ({"name": "A" * 201, "code": "x1", "kind": "department"}, "name"),
    ({"name": 5, "code": "x1", "kind": "department"}, "name"),
    ({"name": "A", "code": "", "kind": "department"}, "code"),
    ({"name": "A", "code": "has space", "kind": "department"}, "code"),
    ({"name": "A", "code": "x" * 65, "kind": "department"}, "code"),
    ({"name": "A", "code": "<script>", "kind": "department"}, "code"),
    ({"name": "A", "code": "x1", "kind": "team"}, "kind"),
    ({"name": "A", "code": "x1", "kind": "department", "parent_id": "1"}, "parent_id"),
    ({"name": "A", "code": "x1", "kind": "department", "parent_id": 424242}, "parent_id"),
    ({"name": "A", "code": "x1", "kind": "department", "parent_id": True}, "parent_id"),
])
def test_bad_unit_input_is_refused_with_field_errors_and_nothing_stored(app, svc, fields, bad):
    before = table_counts(app)
    with pytest.raises(ValidationFailed) as exc:
        svc.create_unit(SYSTEM, **fields)
    assert bad in exc.value.field_errors and exc.value.status == 422
    message = exc.value.field_errors[bad][0]
    assert message.en and message.zh and message.en != message.zh
    assert table_counts(app) == before


def test_codes_are_unique_case_insensitively(app, svc, tree):
    with pytest.raises(ValidationFailed) as exc:
        svc.create_unit(SYSTEM, name="Another", code="EAST", kind="region")
    assert "already used" in exc.value.field_errors["code"][0]
    with pytest.raises(ValidationFailed):
        svc.update_unit(SYSTEM, tree["north"], name="华北区", code="East", kind="region")
    svc.update_unit(SYSTEM, tree["north"], name="华北大区", code="north", kind="region")
    assert svc.unit(tree["north"]).name == "华北大区"
    assert [a[3] for a in audit_actions(app) if a[0] == "org_unit_update"] == [{"name": ["华北区", "华北大区"]}]


def test_only_empty_units_can_be_deleted(app, svc, tree):
    user_id = add_user(app, "lin")
    with pytest.raises(ValidationFailed) as exc:
        svc.delete_unit(SYSTEM, tree["sh"])
    assert "sub-units" in exc.value.message
    svc.assign_user(SYSTEM, user_id, org_unit_id=tree["sh_sales"])
    post_id = svc.create_post(SYSTEM, name="销售代表", code="sales-rep", org_unit_id=tree["sh_sales"])
    with pytest.raises(ValidationFailed) as exc:
        svc.delete_unit(SYSTEM, tree["sh_sales"])
    assert "users belong to it" in exc.value.message and "posts belong to it" in exc.value.message
    assert "还有用户属于它" in exc.value.message.zh
    svc.assign_user(SYSTEM, user_id, org_unit_id=None)
    svc.delete_post(SYSTEM, post_id)
    svc.delete_unit(SYSTEM, tree["sh_sales"])
    assert tree["sh_sales"] not in paths(app)
    with pytest.raises(RecordNotFound):
        svc.delete_unit(SYSTEM, tree["sh_sales"])


def test_a_unit_that_records_point_at_cannot_be_deleted(app, tree):
    from crmkit.runtime.org.views import _org_unit_columns

    services = app.extensions["crmkit"]
    svc = org(app)
    svc.referencing_columns = lambda: _org_unit_columns(services)
    user_id = add_user(app, "rec", ["Admin"])
    svc.assign_user(SYSTEM, user_id, org_unit_id=tree["bj"], role_ids=[_role_id(app, "Admin")])
    from crmkit.runtime.actor import Actor

    staff = Actor(id=user_id, username="rec", is_admin=True, org_unit_id=tree["bj"])
    rid = services.records.create("membership.member", {"name": "王芳", "mobile": "13900000001", "joined_on": "2024-01-02"}, staff)
    assert services.queries.get("membership.member", rid, SYSTEM)["org_unit_id"] == tree["bj"]
    svc.assign_user(SYSTEM, user_id, org_unit_id=None, role_ids=[_role_id(app, "Admin")])
    with pytest.raises(ValidationFailed) as exc:
        svc.delete_unit(SYSTEM, tree["bj"])
    assert "records belong to it" in exc.value.message
    assert tree["bj"] in paths(app)


def _role_id(app, name):
    return dict((n, i) for i, n in org(app).roles())[name]


def test_posts_carry_roles_and_users_hold_posts(app, svc, tree):
    sales = add_role(app, "Sales", [("read", "entity:membership.member")])
    mgr = add_role(app, "Manager", [("update", "entity:membership.member")])
    post_id = svc.create_post(SYSTEM, name="区域经理", code="region-mgr", org_unit_id=tree["east"], description="管华东",
                              role_ids=[sales, mgr, sales])
    p = svc.post(post_id)
    assert (p.name, p.code, p.org_unit_id, p.description, p.role_ids) == ("区域经理", "region-mgr", tree["east"], "管华东", tuple(sorted((sales, mgr))))
    user_id = add_user(app, "zhao")
    svc.assign_user(SYSTEM, user_id, org_unit_id=tree["sh"], post_ids=[post_id], role_ids=[])
    m = svc.membership(user_id)
    assert (m.org_unit_id, m.post_ids, m.role_ids) == (tree["sh"], (post_id,), ())
    svc.update_post(SYSTEM, post_id, name="区域经理", code="region-mgr", org_unit_id=tree["east"], description="管华东", role_ids=[sales])
    assert svc.post(post_id).role_ids == (sales,)
    actions = [a[0] for a in audit_actions(app)]
    assert actions.count("post_create") == 1 and actions.count("post_update") == 1 and "user_assign" in actions
    update = next(a for a in audit_actions(app) if a[0] == "post_update")
    assert update[3] == {"role_ids": [sorted((sales, mgr)), [sales]]}
    svc.delete_post(SYSTEM, post_id)
    assert svc.membership(user_id).post_ids == ()
    with pytest.raises(RecordNotFound):
        svc.post(post_id)


def test_bad_post_and_assignment_input_is_refused_and_nothing_changes(app, svc, tree):
    user_id = add_user(app, "qian")
    before = table_counts(app)
    for kwargs, field in (({"role_ids": [99999]}, "role_ids"), ({"role_ids": ["x"]}, "role_ids"), ({"org_unit_id": 99999}, "org_unit_id"),
                          ({"description": "d" * 1001}, "description")):
        with pytest.raises(ValidationFailed) as exc:
            svc.create_post(SYSTEM, name="P", code="p1", **kwargs)
        assert field in exc.value.field_errors
    for kwargs, field in (({"post_ids": [99999]}, "post_ids"), ({"role_ids": [99999]}, "role_ids"), ({"org_unit_id": 99999}, "org_unit_id"),
                          ({"post_ids": [-1]}, "post_ids")):
        with pytest.raises(ValidationFailed) as exc:
            svc.assign_user(SYSTEM, user_id, **kwargs)
        assert field in exc.value.field_errors
    with pytest.raises(RecordNotFound):
        svc.assign_user(SYSTEM, 99999, org_unit_id=tree["sh"])
    assert table_counts(app) == before


def test_the_last_administrator_keeps_the_admin_role(app, svc):
    admin_id = next(u["id"] for u in svc.users() if u["username"] == "admin")
    admin_role = _role_id(app, "Admin")
    with pytest.raises(ValidationFailed) as exc:
        svc.assign_user(SYSTEM, admin_id, role_ids=[])
    assert "last administrator" in exc.value.field_errors["role_ids"][0]
    with app.extensions["crmkit"].engine.connect() as c:
        assert c.execute(select(ab_user_role.c.role_id).where(ab_user_role.c.user_id == admin_id)).scalars().all() == [admin_role]
    other = add_user(app, "second_admin", ["Admin"])
    svc.assign_user(SYSTEM, admin_id, role_ids=[])  # another admin exists now
    assert svc.membership(admin_id).role_ids == ()
    assert svc.membership(other).role_ids == (admin_role,)


def test_reassigning_replaces_unit_posts_and_direct_roles(app, svc, tree):
    r1 = add_role(app, "R1")
    r2 = add_role(app, "R2")
    p1 = svc.create_post(SYSTEM, name="P1", code="p1")
    p2 = svc.create_post(SYSTEM, name="P2", code="p2")
    uid = add_user(app, "sun", ["R1"])
    svc.assign_user(SYSTEM, uid, org_unit_id=tree["sh"], post_ids=[p1, p2], role_ids=[r1, r2])
    svc.assign_user(SYSTEM, uid, org_unit_id=tree["bj"], post_ids=[p2], role_ids=[r2])
    m = svc.membership(uid)
    assert (m.org_unit_id, m.post_ids, m.role_ids) == (tree["bj"], (p2,), (r2,))
    with app.extensions["crmkit"].engine.connect() as c:
        assert c.execute(select(user_org.c.org_unit_id).where(user_org.c.user_id == uid)).scalars().all() == [tree["bj"]]
        assert c.execute(select(user_post.c.post_id).where(user_post.c.user_id == uid)).scalars().all() == [p2]
    last = [a for a in audit_actions(app) if a[0] == "user_assign"][-1]
    assert last[2] == uid and last[3] == {"org_unit_id": [tree["sh"], tree["bj"]], "post_ids": [[p1, p2], [p2]], "role_ids": [[r1, r2], [r2]]}
