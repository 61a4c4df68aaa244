"""The org admin pages over real HTTP: build the tree, move units, posts, assign users; bad input, CSRF, access."""
from __future__ import annotations

import re

import pytest

from crmkit.runtime.actor import SYSTEM

from conftest import csrf_from, login
from org_support import PASSWORD, add_role, add_user, build_tree, org, paths, table_counts


def token(client, url="/admin/org/"):
    return csrf_from(client.get(url).get_data(as_text=True))


def text_of(resp) -> str:
    return resp.get_data(as_text=True)


def test_admin_nav_links_to_the_org_pages_in_both_languages(client):
    client.get("/locale/zh")
    zh = text_of(client.get("/home"))
    assert 'href="/admin/org/"' in zh and "组织架构" in zh
    page = client.get("/admin/org/")
    assert page.status_code == 200
    body = text_of(page)
    assert "还没有组织单元" in body and "新建组织单元" in body and "集团" in body
    client.get("/locale/en")
    body = text_of(client.get("/admin/org/"))
    assert "Org structure" in body and "No org units yet" in body and "Department" in body
    for url, en in (("/admin/org/posts", "No posts yet"), ("/admin/org/users", "Direct roles")):
        resp = client.get(url)
        assert resp.status_code == 200 and en in text_of(resp)


def test_building_the_tree_through_the_forms(app, client):
    t = token(client)
    resp = client.post("/admin/org/units", data={"csrf_token": t, "name": "华夏集团", "code": "hx", "kind": "group", "parent_id": ""})
    assert resp.status_code == 302
    group = int(re.search(r"unit=(\d+)", resp.headers["Location"]).group(1))
    resp = client.post("/admin/org/units", data={"csrf_token": t, "name": "华东区", "code": "east", "kind": "region", "parent_id": str(group)})
    east = int(re.search(r"unit=(\d+)", resp.headers["Location"]).group(1))
    resp = client.post("/admin/org/units", data={"csrf_token": t, "name": "上海公司", "code": "sh", "kind": "company", "parent_id": str(east)},
                       follow_redirects=True)
    assert resp.status_code == 200
    body = text_of(resp)
    assert "上海公司" in body and ("Org unit “上海公司” added." in body or "已添加组织单元“上海公司”。" in body)
    units = {u.code: u for u in org(app).units()}
    assert units["sh"].path == f"/{group}/{east}/{units['sh'].id}/" and units["sh"].kind == "company"
    # The tree page shows every unit, indented by depth, with the selected unit's path.
    page = text_of(client.get(f"/admin/org/?unit={units['sh'].id}"))
    assert page.index("华夏集团") < page.index("华东区") < page.index("上海公司")
    assert 'style="--depth: 2"' in page and 'aria-selected="true"' in page


@pytest.mark.parametrize("form, field_text", [
    ({"name": "", "code": "c1", "kind": "department", "parent_id": ""}, ("Enter a name.", "请填写名称。")),
    ({"name": "X", "code": "bad code", "kind": "department", "parent_id": ""}, ("Use 1-64 letters", "编码为 1-64 个字母")),
    ({"name": "X", "code": "c1", "kind": "nope", "parent_id": ""}, ("Pick one of the kinds", "请从这些类型中选择")),
    ({"name": "X", "code": "c1", "kind": "department", "parent_id": "abc"}, ("Pick an org unit from the list.", "请从列表中选择组织单元。")),
    ({"name": "X", "code": "c1", "kind": "department", "parent_id": "99999"}, ("There is no org unit with id 99999.", "没有编号为 99999 的组织单元。")),
    ({"name": "X", "code": "c1", "kind": "department", "parent_id": "9" * 30}, ("Pick an org unit from the list.", "请从列表中选择组织单元。")),
])
def test_bad_unit_forms_come_back_with_422_and_the_message_and_store_nothing(app, client, form, field_text):
    before = table_counts(app)
    resp = client.post("/admin/org/units", data={"csrf_token": token(client), **form})
    assert resp.status_code == 422
    body = text_of(resp)
    assert field_text[0] in body or field_text[1] in body
    assert 'aria-invalid="true"' in body
    # What the admin typed is kept in the form.
    if form["name"]:
        assert f'value="{form["name"]}"' in body
    assert table_counts(app) == before


def test_changes_without_a_csrf_token_are_refused(app, client):
    tree = build_tree(org(app))
    before, before_paths = table_counts(app), paths(app)
    for url, data in (("/admin/org/units", {"name": "X", "code": "x", "kind": "group"}),
                      (f"/admin/org/units/{tree['sh']}/move", {"parent_id": str(tree["north"])}),
                      (f"/admin/org/units/{tree['sh_sales']}/delete", {}),
                      ("/admin/org/posts", {"name": "P", "code": "p"}),
                      ("/admin/org/users/1", {"org_unit_id": str(tree["sh"])})):
        resp = client.post(url, data=data)
        assert resp.status_code == 400, url
        assert "CSRF" in text_of(resp)
        resp = client.post(url, data={**data, "csrf_token": "forged"})
        assert resp.status_code == 400, url
    assert table_counts(app) == before and paths(app) == before_paths


def test_non_admins_cannot_see_or_change_the_org_structure(app):
    tree = build_tree(org(app))
    add_role(app, "Clerk", [("read", "entity:membership.member")])
    add_user(app, "clerk", ["Clerk"])
    c = app.test_client()
    login(c, "clerk", PASSWORD)
    home = text_of(c.get("/home"))
    assert "/admin/org/" not in home
    for url in ("/admin/org/", "/admin/org/posts", "/admin/org/users", "/admin/org/users/1"):
        resp = c.get(url)
        assert resp.status_code == 403, url
        assert "Only administrators" in text_of(resp) or "只有管理员" in text_of(resp)
    t = csrf_from(home)
    before = paths(app)
    resp = c.post(f"/admin/org/units/{tree['sh']}/move", data={"csrf_token": t, "parent_id": ""})
    assert resp.status_code == 403 and paths(app) == before
    # Anonymous visitors are sent to log in.
    anon = app.test_client().get("/admin/org/")
    assert anon.status_code == 302 and "/login/" in anon.headers["Location"]


def test_moving_units_through_the_form(app, client):
    tree = build_tree(org(app))
    t = token(client)
    resp = client.post(f"/admin/org/units/{tree['sh']}/move", data={"csrf_token": t, "parent_id": str(tree["north"])}, follow_redirects=True)
    assert resp.status_code == 200
    assert "2" in text_of(resp) and ("re-pathed" in text_of(resp) or "路径已更新" in text_of(resp))
    assert paths(app)[tree["sh_sales"]][1] == f"/{tree['group']}/{tree['north']}/{tree['sh']}/{tree['sh_sales']}/"
    before = paths(app)
    resp = client.post(f"/admin/org/units/{tree['north']}/move", data={"csrf_token": t, "parent_id": str(tree["sh_sales"])})
    assert resp.status_code == 422
    assert "cannot move under itself" in text_of(resp) or "不能把单元移到它自己" in text_of(resp)
    assert paths(app) == before
    # The move list offers no unit inside the moved unit's own subtree.
    page = text_of(client.get(f"/admin/org/?unit={tree['north']}"))
    move_select = page[page.index('id="move-parent"'):]
    move_select = move_select[:move_select.index("</select>")]
    assert f'value="{tree["sh_sales"]}"' not in move_select and f'value="{tree["east"]}"' in move_select
    assert client.post("/admin/org/units/99999/move", data={"csrf_token": t, "parent_id": ""}).status_code == 404


def test_editing_and_deleting_units_through_the_forms(app, client):
    tree = build_tree(org(app))
    t = token(client)
    resp = client.post(f"/admin/org/units/{tree['bj']}", data={"csrf_token": t, "name": "北京分公司", "code": "bj", "kind": "company"})
    assert resp.status_code == 302 and org(app).unit(tree["bj"]).name == "北京分公司"
    resp = client.post(f"/admin/org/units/{tree['bj']}", data={"csrf_token": t, "name": "北京分公司", "code": "east", "kind": "company"})
    assert resp.status_code == 422 and ("already used" in text_of(resp) or "已被使用" in text_of(resp))
    assert org(app).unit(tree["bj"]).code == "bj"
    # A unit with sub-units is not deleted; the page says why and what to do.
    resp = client.post(f"/admin/org/units/{tree['north']}/delete", data={"csrf_token": t})
    assert resp.status_code == 422
    assert "move or delete them first" in text_of(resp) or "请先移走或删除" in text_of(resp)
    assert tree["north"] in paths(app)
    # The confirmation works without JavaScript too.
    confirm = text_of(client.get(f"/admin/org/?unit={tree['bj']}&confirm=delete"))
    assert 'id="delete-unit-modal">' in confirm.replace(" hidden>", ">HIDDEN") and f'action="/admin/org/units/{tree["bj"]}/delete"' in confirm
    resp = client.post(f"/admin/org/units/{tree['bj']}/delete", data={"csrf_token": t})
    assert resp.status_code == 302 and tree["bj"] not in paths(app)


def test_user_text_is_escaped(app, client):
    t = token(client)
    client.post("/admin/org/units", data={"csrf_token": t, "name": "<script>alert(1)</script>", "code": "xss", "kind": "group"})
    uid = next(u.id for u in org(app).units() if u.code == "xss")
    body = text_of(client.get(f"/admin/org/?unit={uid}"))
    assert "<script>alert(1)</script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_posts_through_the_forms(app, client):
    tree = build_tree(org(app))
    sales = add_role(app, "Sales", [("read", "entity:membership.member")])
    mgr = add_role(app, "Manager")
    t = token(client, "/admin/org/posts")
    new_form = text_of(client.get("/admin/org/posts?new=1"))
    assert 'name="role_ids"' in new_form and "Sales" in new_form
    resp = client.post("/admin/org/posts", data={"csrf_token": t, "name": "区域经理", "code": "region-mgr", "org_unit_id": str(tree["east"]),
                                                 "description": "负责华东", "role_ids": [str(sales), str(mgr)]})
    assert resp.status_code == 302
    post = org(app).posts()[0]
    assert (post.name, post.org_unit_id, post.description, post.role_ids) == ("区域经理", tree["east"], "负责华东", tuple(sorted((sales, mgr))))
    listing = text_of(client.get("/admin/org/posts"))
    assert "区域经理" in listing and "Manager" in listing and "华东区" in listing
    resp = client.post(f"/admin/org/posts/{post.id}", data={"csrf_token": t, "name": "区域经理", "code": "region-mgr", "org_unit_id": "",
                                                            "description": "", "role_ids": [str(sales)]})
    assert resp.status_code == 302 and org(app).post(post.id).role_ids == (sales,) and org(app).post(post.id).org_unit_id is None
    before = table_counts(app)
    for roles in (["abc"], ["99999"]):
        resp = client.post("/admin/org/posts", data={"csrf_token": t, "name": "P2", "code": "p2", "role_ids": roles})
        assert resp.status_code == 422
        assert "Pick entries from the list." in text_of(resp) or "There is no role with id 99999." in text_of(resp) \
            or "请从列表中选择。" in text_of(resp) or "没有编号为 99999 的角色。" in text_of(resp)
        assert 'value="P2"' in text_of(resp)
    assert table_counts(app) == before
    assert client.get("/admin/org/posts?post=99999").status_code == 404
    resp = client.post(f"/admin/org/posts/{post.id}/delete", data={"csrf_token": t})
    assert resp.status_code == 302 and org(app).posts() == []


def test_assigning_a_user_through_the_form(app, client):
    svc = org(app)
    tree = build_tree(svc)
    sales = add_role(app, "Sales", [("read", "entity:membership.member")])
    clerk = add_role(app, "Clerk")
    post_id = svc.create_post(SYSTEM, name="销售代表", code="sales-rep", org_unit_id=tree["sh"], role_ids=[sales])
    uid = add_user(app, "zhou")
    t = token(client, "/admin/org/users")
    page = text_of(client.get(f"/admin/org/users/{uid}"))
    assert "zhou" in page and "销售代表 · 上海公司" in page
    resp = client.post(f"/admin/org/users/{uid}", data={"csrf_token": t, "org_unit_id": str(tree["sh_sales"]), "post_ids": [str(post_id)],
                                                         "role_ids": [str(clerk)]}, follow_redirects=True)
    assert resp.status_code == 200
    m = svc.membership(uid)
    assert (m.org_unit_id, m.post_ids, m.role_ids) == (tree["sh_sales"], (post_id,), (clerk,))
    # Roles that come through posts are shown beside the direct ones.
    assert "Sales" in text_of(resp)
    # The users list filtered by a unit shows the people in its whole subtree.
    in_east = text_of(client.get(f"/admin/org/users?unit={tree['east']}"))
    in_north = text_of(client.get(f"/admin/org/users?unit={tree['north']}"))
    assert ">zhou</a>" in in_east and ">zhou</a>" not in in_north
    before = svc.membership(uid)
    resp = client.post(f"/admin/org/users/{uid}", data={"csrf_token": t, "org_unit_id": "99999", "post_ids": ["x"]})
    assert resp.status_code == 422
    assert ("There is no org unit with id 99999." in text_of(resp) or "没有编号为 99999 的组织单元。" in text_of(resp))
    assert svc.membership(uid) == before
    assert client.get("/admin/org/users/99999").status_code == 404
    assert client.post("/admin/org/users/99999", data={"csrf_token": t}).status_code == 404
