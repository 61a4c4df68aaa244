"""Saved list filters: private or shared with roles, validated when saved, run as the viewer (service and HTTP)."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from crmkit.runtime.actor import Actor
from crmkit.runtime.errors import BadQuery, PermissionDenied, RecordNotFound, ValidationFailed
from crmkit.runtime.org.service import OrgService
from crmkit.runtime.permissions.admin import PermissionAdmin
from crmkit.runtime.storage import platform_tables as pt

from conftest import csrf_from, login
from policy_support import PASSWORD, ROLES, USERS, build_scenario

MEMBER = "membership.member"
ACTIVE = {"and": [{"field": "status", "op": "eq", "value": "active"}]}


@pytest.fixture
def sc(app):
    """The policy scenario, with the builder permission on members granted to the Manager role."""
    sc = build_scenario(app)
    perms = PermissionAdmin(sc.services.engine, sc.services.policy.rules, sc.services.store.catalog)
    member = sc.services.store.catalog().entity(MEMBER)
    perms.set_actions(sc.roles["Manager"], member, ROLES["Manager"][0] | {"builder"}, actor_id=None)
    return sc


def stored(sc) -> int:
    with sc.services.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(pt.saved_filter)).scalar_one()


def names(sc, username) -> list[str]:
    return [f.name for f in sc.services.saved_filters.visible(sc.actor(username), MEMBER)]


def list_ids(sc, username, tree) -> set[int]:
    page = sc.services.queries.list(MEMBER, sc.actor(username), filter=tree, limit=200, count="none")
    return {r["id"] for r in page.rows}


# --- service ----------------------------------------------------------------------------------------

def test_a_private_filter_is_visible_and_usable_only_by_its_owner(sc):
    svc = sc.services.saved_filters
    mine = svc.create(sc.actor("desk_sh"), MEMBER, name="  Active   members ", filter=ACTIVE)
    assert mine.name == "Active members" and mine.role_ids == () and mine.key == f"sf-{mine.id}"
    assert names(sc, "desk_sh") == ["Active members"]
    for other in ("mgr_east", "sales_bj", "desk_sales", "lost_hq"):
        assert names(sc, other) == []
        with pytest.raises(BadQuery, match="no saved filter"):
            svc.find(sc.actor(other), MEMBER, mine.key)
    with pytest.raises(RecordNotFound):
        svc.update(sc.actor("mgr_east"), MEMBER, mine.id, name="Hijacked", role_ids=[])
    with pytest.raises(RecordNotFound):
        svc.delete(sc.actor("mgr_east"), MEMBER, mine.id)
    assert names(sc, "desk_sh") == ["Active members"] and stored(sc) == 1
    # the owner renames and deletes it
    svc.update(sc.actor("desk_sh"), MEMBER, mine.id, name="Still active", role_ids=[])
    assert names(sc, "desk_sh") == ["Still active"]
    with pytest.raises(ValidationFailed):
        svc.create(sc.actor("desk_sh"), MEMBER, name="Still active", filter=ACTIVE)  # one name per owner and entity
    svc.delete(sc.actor("desk_sh"), MEMBER, mine.id)
    assert names(sc, "desk_sh") == [] and stored(sc) == 0


def test_only_builders_of_the_entity_or_admins_may_share_with_roles(sc):
    svc = sc.services.saved_filters
    member = sc.services.store.catalog().entity(MEMBER)
    assert not sc.services.policy.may_share_filters(sc.actor("desk_sh"), member)
    assert sc.services.policy.may_share_filters(sc.actor("mgr_east"), member)
    with pytest.raises(PermissionDenied, match="builder permission"):
        svc.create(sc.actor("desk_sh"), MEMBER, name="Shared", filter=ACTIVE, role_ids=[sc.roles["FrontDesk"]])
    assert stored(sc) == 0
    private = svc.create(sc.actor("desk_sh"), MEMBER, name="Mine", filter=ACTIVE)
    with pytest.raises(PermissionDenied):  # nor by re-sharing later
        svc.update(sc.actor("desk_sh"), MEMBER, private.id, name="Mine", role_ids=[sc.roles["FrontDesk"]])
    assert svc.own(sc.actor("desk_sh"), MEMBER, private.id).role_ids == ()
    with pytest.raises(ValidationFailed) as refused:
        svc.create(sc.actor("mgr_east"), MEMBER, name="Ghost role", filter=ACTIVE, role_ids=[987654])
    assert "no role with id 987654" in str(refused.value.field_errors["role_ids"]) and stored(sc) == 1
    shared = svc.create(sc.actor("mgr_east"), MEMBER, name="Shared", filter=ACTIVE, role_ids=[sc.roles["FrontDesk"]])
    assert shared.role_ids == (sc.roles["FrontDesk"],)
    admin = Actor(id=1, username="admin", is_admin=True)
    assert svc.create(admin, MEMBER, name="From admin", filter=ACTIVE, role_ids=[sc.roles["Sales"]]).role_ids == (sc.roles["Sales"],)


def test_a_shared_filter_reaches_holders_of_the_role_only_and_leaves_with_the_role(sc):
    svc = sc.services.saved_filters
    shared = svc.create(sc.actor("mgr_east"), MEMBER, name="Active (desk)", filter=ACTIVE, role_ids=[sc.roles["FrontDesk"]])
    holders = {u for u, (roles, _) in USERS.items() if "FrontDesk" in roles}
    assert holders == {"desk_sh", "desk_sales"}
    with pytest.raises(PermissionDenied):  # no read permission on members: no filters of theirs either
        names(sc, "viewer")
    for user in set(USERS) - {"viewer"}:
        expected = ["Active (desk)"] if user in holders or user == "mgr_east" else []
        assert names(sc, user) == expected, user
    assert svc.find(sc.actor("desk_sales"), MEMBER, shared.key).filter == ACTIVE
    # desk_sh loses the FrontDesk role: the filter disappears from their menu and cannot be applied by its id
    OrgService(sc.services.engine).assign_user(Actor(id=None, username="system", is_admin=True), sc.users["desk_sh"],
                                               org_unit_id=sc.units["SH"], role_ids=[sc.roles["LostDesk"]])
    assert names(sc, "desk_sh") == []
    with pytest.raises(BadQuery, match="no saved filter"):
        svc.find(sc.actor("desk_sh"), MEMBER, shared.key)
    assert names(sc, "desk_sales") == ["Active (desk)"]
    # the owner makes it private again: the other holder loses it too
    svc.update(sc.actor("mgr_east"), MEMBER, shared.id, name="Active (desk)", role_ids=[])
    assert names(sc, "desk_sales") == [] and names(sc, "mgr_east") == ["Active (desk)"]


BAD = [
    ({"and": [{"field": "no_such_field", "op": "eq", "value": "x"}]}, None, "no such field"),
    ({"and": [{"field": "status", "op": "gt_banana", "value": "x"}]}, None, "gt_banana"),
    ({"and": [{"field": "total_spent", "op": "gt", "value": "lots"}]}, None, "lots"),
    ({"and": [{"field": "id_number", "op": "eq", "value": "1"}]}, None, "Cannot filter on 'id_number'"),  # hidden from FrontDesk
    ({"and": [{"field": "status", "op": "eq", "value": "active", "drop": "table"}]}, None, "Unknown keys"),
    ({"or": [{"or": [{"or": [{"or": [{"or": [{"or": [{"field": "status", "op": "eq", "value": "x"}]}]}]}]}]}]}, None, "nested"),
    ({"and": []}, None, "at least one condition"),
    ({}, None, "at least one condition"),
    ("status = 'active'", None, "at least one condition"),
    (ACTIVE, "id_number", "Cannot sort by 'id_number'"),
    (ACTIVE, "no_such_field", "Cannot sort"),
]


def test_a_bad_filter_is_refused_with_the_reason_and_nothing_is_stored(sc):
    for tree, sort, message in BAD:
        with pytest.raises(BadQuery) as refused:
            sc.services.saved_filters.create(sc.actor("desk_sh"), MEMBER, name="Bad", filter=tree, sort=sort)
        assert message in str(refused.value.message), (tree, sort, refused.value.message)
        assert stored(sc) == 0
    for name in ("", "   ", "x" * 101, "bell\x07inside"):
        with pytest.raises(ValidationFailed):
            sc.services.saved_filters.create(sc.actor("desk_sh"), MEMBER, name=name, filter=ACTIVE)
        assert stored(sc) == 0


def test_a_shared_filter_naming_a_field_hidden_from_the_viewer_is_refused_not_answered(sc):
    svc = sc.services.saved_filters
    notes = {"and": [{"field": "notes", "op": "contains", "value": "note"}]}
    shared = svc.create(sc.actor("mgr_east"), MEMBER, name="With notes", filter=notes, role_ids=[sc.roles["Sales"]])
    sales = sc.actor("sales_bj")
    assert names(sc, "sales_bj") == ["With notes"]  # it is offered …
    tree = svc.find(sales, MEMBER, shared.key).filter
    with pytest.raises(BadQuery, match="Cannot filter on 'notes'"):  # … but the query service refuses to run it for them
        sc.services.queries.list(MEMBER, sales, filter=tree)
    assert list_ids(sc, "mgr_east", tree)  # the owner, who may read notes, gets rows


def test_a_shared_filter_runs_under_each_viewers_own_row_scope(sc):
    svc = sc.services.saved_filters
    shared = svc.create(sc.actor("mgr_east"), MEMBER, name="Active", filter=ACTIVE,
                        role_ids=[sc.roles["Sales"], sc.roles["FrontDesk"]])
    active = {m for m, d in sc.members.items() if d["status"] == "active"}
    seen = {}
    for user in ("mgr_east", "sales_bj", "desk_sh", "desk_sales"):
        tree = svc.find(sc.actor(user), MEMBER, shared.key).filter
        seen[user] = list_ids(sc, user, tree)
        assert seen[user] == sc.expected_member_ids(user) & active, user
    assert all(seen.values()) and len({frozenset(v) for v in seen.values()}) == 4  # one filter, four different answers


def test_a_saved_sort_is_validated_and_kept(sc):
    svc = sc.services.saved_filters
    saved = svc.create(sc.actor("mgr_east"), MEMBER, name="Big spenders", filter=ACTIVE, sort="-total_spent")
    assert svc.find(sc.actor("mgr_east"), MEMBER, saved.key).sort == "-total_spent"


# --- HTTP --------------------------------------------------------------------------------------------

@pytest.fixture
def web(sc, app):
    def client_for(username):
        c = app.test_client()
        login(c, username, PASSWORD)
        return c
    return client_for


def save_form(client, params: str) -> dict:
    html = client.get(f"/e/{MEMBER}/?{params}").get_data(as_text=True)
    assert 'action="/e/membership.member/saved-filters"' in html
    return {"csrf_token": csrf_from(html), "next": f"/e/{MEMBER}/?{params}"}


def member_names(sc, ids) -> set[str]:
    return {f"会员{sc.members[i]['n']:03d}" for i in ids}


def test_saving_applying_renaming_and_deleting_over_http(sc, web):
    c = web("desk_sh")
    form = save_form(c, "ff=status&fo=eq&fv=active&sort=-total_spent")
    html = c.get(f"/e/{MEMBER}/?ff=status&fo=eq&fv=active").get_data(as_text=True)
    assert 'name="role_ids"' not in html  # FrontDesk may not share: no role choice offered
    resp = c.post(f"/e/{MEMBER}/saved-filters", data={**form, "name": "在用会员", "ff": "status", "fo": "eq", "fv": "active",
                                                      "match": "all", "sort": "-total_spent", "keep_sort": "1"})
    assert resp.status_code == 303
    (saved,) = sc.services.saved_filters.visible(sc.actor("desk_sh"), MEMBER)
    assert saved.name == "在用会员" and saved.filter == ACTIVE and saved.sort == "-total_spent"
    assert resp.headers["Location"].endswith(f"/e/{MEMBER}/?saved={saved.key}")
    page = c.get(resp.headers["Location"])
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert f'<option value="{saved.key}" selected>在用会员</option>' in html and '<optgroup label="我的筛选">' in html
    visible = sc.expected_member_ids("desk_sh")
    active = {m for m in visible if sc.members[m]["status"] == "active"}
    assert active and active != visible
    assert all(n in html for n in member_names(sc, active))
    assert not any(n in html for n in member_names(sc, visible - active))
    # the saved sort applies: rows come by total_spent, largest first
    shown = [int(n) for n in re.findall(r"会员(\d{3})", html)]
    assert shown == sorted(shown, reverse=True)
    # manage page (htmx rename, then delete)
    manage = c.get(f"/e/{MEMBER}/saved-filters").get_data(as_text=True)
    assert "管理我的筛选" in manage and "在用会员" in manage
    token = csrf_from(manage)
    resp = c.post(f"/e/{MEMBER}/saved-filters/{saved.id}", data={"csrf_token": token, "name": "活跃会员"}, headers={"HX-Request": "true"})
    assert resp.status_code == 200 and 'id="saved-filter-region"' in resp.get_data(as_text=True) and "<html" not in resp.get_data(as_text=True)
    assert names(sc, "desk_sh") == ["活跃会员"]
    c.get("/locale/en")
    manage = c.get(f"/e/{MEMBER}/saved-filters").get_data(as_text=True)
    assert "Manage saved filters" in manage and "My filters" in manage
    resp = c.post(f"/e/{MEMBER}/saved-filters/{saved.id}/delete", data={"csrf_token": token})
    assert resp.status_code == 303 and names(sc, "desk_sh") == [] and stored(sc) == 0


def test_http_writes_need_csrf_and_belong_to_the_owner(sc, web):
    c = web("mgr_east")
    form = save_form(c, "ff=status&fo=eq&fv=active")
    resp = c.post(f"/e/{MEMBER}/saved-filters", data={"name": "No token", "ff": "status", "fo": "eq", "fv": "active"})
    assert resp.status_code == 400 and stored(sc) == 0
    c.post(f"/e/{MEMBER}/saved-filters", data={**form, "name": "Mine", "ff": "status", "fo": "eq", "fv": "active"})
    (mine,) = sc.services.saved_filters.visible(sc.actor("mgr_east"), MEMBER)
    other = web("sales_bj")
    token = csrf_from(other.get(f"/e/{MEMBER}/saved-filters").get_data(as_text=True))
    resp = other.post(f"/e/{MEMBER}/saved-filters/{mine.id}/delete", data={"csrf_token": token}, headers={"HX-Request": "true"})
    assert resp.status_code == 422 and f"没有编号为 {mine.id} 的已保存筛选" in resp.get_data(as_text=True)
    resp = other.post(f"/e/{MEMBER}/saved-filters/{mine.id}", data={"csrf_token": token, "name": "Renamed"})
    assert resp.status_code == 303
    assert names(sc, "mgr_east") == ["Mine"]
    assert other.get(f"/e/{MEMBER}/?saved={mine.key}").status_code == 422  # not theirs, not shared: refused, no rows


def test_http_sharing_and_bad_filters_are_refused_with_nothing_stored(sc, web):
    desk = web("desk_sh")
    form = save_form(desk, "ff=status&fo=eq&fv=active")
    resp = desk.post(f"/e/{MEMBER}/saved-filters", data={**form, "name": "Share me", "ff": "status", "fo": "eq", "fv": "active",
                                                         "visibility": "roles", "role_ids": str(sc.roles["FrontDesk"])})
    assert resp.status_code == 303 and resp.headers["Location"].endswith(form["next"])
    assert "设计权限" in desk.get(resp.headers["Location"]).get_data(as_text=True) and stored(sc) == 0
    resp = desk.post(f"/e/{MEMBER}/saved-filters", data={**form, "name": "Hidden", "ff": "id_number", "fo": "eq", "fv": "1"})
    assert "不能按“id_number”筛选" in desk.get(resp.headers["Location"]).get_data(as_text=True) and stored(sc) == 0
    resp = desk.post(f"/e/{MEMBER}/saved-filters", data={**form, "name": "", "ff": "status", "fo": "eq", "fv": "active"})
    assert stored(sc) == 0
    # a builder shares with Sales; a Sales user gets it in the menu and runs it under their own rows
    mgr = web("mgr_east")
    form = save_form(mgr, "ff=status&fo=eq&fv=active")
    assert f'name="role_ids" value="{sc.roles["Sales"]}"' in mgr.get(f"/e/{MEMBER}/?ff=status&fo=eq&fv=active").get_data(as_text=True)
    mgr.post(f"/e/{MEMBER}/saved-filters", data={**form, "name": "Active for sales", "ff": "status", "fo": "eq", "fv": "active",
                                                "visibility": "roles", "role_ids": [str(sc.roles["Sales"])]})
    mgr.post(f"/e/{MEMBER}/saved-filters", data={**form, "name": "Notes for sales", "ff": "notes", "fo": "contains", "fv": "note",
                                                "visibility": "roles", "role_ids": [str(sc.roles["Sales"])]})
    by_name = {f.name: f for f in sc.services.saved_filters.visible(sc.actor("mgr_east"), MEMBER)}
    assert by_name["Active for sales"].role_ids == (sc.roles["Sales"],)
    sales = web("sales_bj")
    html = sales.get(f"/e/{MEMBER}/").get_data(as_text=True)
    assert '<optgroup label="共享给我的">' in html and "Active for sales" in html and "Notes for sales" in html
    page = sales.get(f"/e/{MEMBER}/?saved={by_name['Active for sales'].key}")
    html = page.get_data(as_text=True)
    own = sc.expected_member_ids("sales_bj")
    active = {m for m in own if sc.members[m]["status"] == "active"}
    assert page.status_code == 200 and all(n in html for n in member_names(sc, active))
    assert not any(n in html for n in member_names(sc, set(sc.members) - active))
    page = sales.get(f"/e/{MEMBER}/?saved={by_name['Notes for sales'].key}")
    html = page.get_data(as_text=True)
    assert page.status_code == 422 and "不能按“notes”筛选" in html
    assert not any(n in html for n in member_names(sc, set(sc.members)))
    # exports follow the same saved filter
    csv = mgr.get(f"/e/{MEMBER}/export.csv?saved={by_name['Active for sales'].key}").get_data(as_text=True)
    mgr_active = {m for m in sc.expected_member_ids("mgr_east") if sc.members[m]["status"] == "active"}
    assert set(re.findall(r"会员\d{3}", csv)) == member_names(sc, mgr_active)
