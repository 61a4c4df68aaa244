"""Admin pages: the permission matrix, the role × entity drill-down, the explainer, and unmasking on the web."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from crmkit.runtime.storage import platform_tables as pt

from conftest import csrf_from, login
from policy_support import PASSWORD, build_scenario

MEMBER = "membership.member"


@pytest.fixture
def sc(app):
    return build_scenario(app)


def test_matrix_page_in_both_languages_and_saving_a_role(sc, client):
    page = client.get(f"/admin/permissions/?role={sc.roles['FrontDesk']}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "权限矩阵" in html and "FrontDesk" in html
    assert 'name="membership.member:read" aria-label="会员 · 查看" checked' in html
    assert 'name="membership.member:export" aria-label="会员 · 导出">' in html
    client.get("/locale/en")
    assert "Permission matrix" in client.get("/admin/permissions/").get_data(as_text=True)
    token = csrf_from(html)
    resp = client.post("/admin/permissions/", data={"csrf_token": token, "role_id": sc.roles["FrontDesk"], "membership.member:read": "on",
                                                    "membership.member:export": "on", "membership.level:read": "on"})
    assert resp.status_code == 303
    rules = sc.services.policy.rules.rules()
    held = {a for a, r in rules.role_perms[sc.roles["FrontDesk"]] if r == "entity:membership.member"}
    assert held == {"read", "export"}
    # the FrontDesk user now exports but can no longer edit
    user = client.application.test_client()
    login(user, "desk_sh", PASSWORD)
    assert user.get("/e/membership.member/export.csv").status_code == 200
    assert user.get(f"/e/membership.member/{next(iter(sc.expected_member_ids('desk_sh')))}/edit").status_code == 403


def test_matrix_changes_need_csrf_and_a_real_role(sc, client):
    resp = client.post("/admin/permissions/", data={"role_id": sc.roles["FrontDesk"]})
    assert resp.status_code == 400
    token = csrf_from(client.get("/admin/permissions/").get_data(as_text=True))
    resp = client.post("/admin/permissions/", data={"csrf_token": token, "role_id": "999999"})
    assert resp.status_code == 400 and "role" in resp.get_data(as_text=True)
    held = {a for a, r in sc.services.policy.rules.rules().role_perms[sc.roles["FrontDesk"]] if r == "entity:membership.member"}
    assert held == {"read", "create", "update"}


def test_drill_down_sets_field_rules_and_row_scope(sc, client):
    url = f"/admin/permissions/{sc.roles['Sales']}/{MEMBER}"
    html = client.get(url).get_data(as_text=True)
    assert 'name="access:notes" value="hidden" aria-label="备注 · 隐藏" checked' in html
    data = {"csrf_token": csrf_from(html), "scope": "org_unit", "filter": ""}
    member = sc.services.store.catalog().entity(MEMBER)
    for f in member.fields:
        data[f"access:{f.name}"] = "editable"
    data["access:mobile"] = "read_only"
    data["unmask:mobile"] = "on"
    resp = client.post(url, data=data)
    assert resp.status_code == 303
    actor = sc.actor("sales_bj")
    policy = sc.services.policy
    assert "notes" in policy.readable_fields(actor, member) and "mobile" not in policy.writable_fields(actor, member)
    assert "mobile" in policy.unmaskable_fields(actor, member)
    bj = sc.units["BJ"]
    assert {r["id"] for r in sc.services.queries.list(MEMBER, actor, limit=200).rows} == {m for m, v in sc.members.items() if v["unit"] == bj}
    with sc.services.engine.connect() as conn:
        events = conn.execute(select(pt.audit.c.action).where(pt.audit.c.category == "permission")).scalars().all()
    assert "set_fields" in events and "set_row_scope" in events


def test_drill_down_refuses_a_bad_custom_filter_and_changes_nothing(sc, client):
    url = f"/admin/permissions/{sc.roles['Sales']}/{MEMBER}"
    token = csrf_from(client.get(url).get_data(as_text=True))
    for bad in ("{not json", json.dumps({"field": "nope", "op": "eq", "value": 1})):
        resp = client.post(url, data={"csrf_token": token, "scope": "custom", "filter": bad, "access:notes": "editable"})
        html = resp.get_data(as_text=True)
        assert resp.status_code == 422 and 'aria-invalid="true"' in html
    actor = sc.actor("sales_bj")
    assert "notes" not in sc.services.policy.readable_fields(actor, sc.services.store.catalog().entity(MEMBER))
    assert {r["id"] for r in sc.services.queries.list(MEMBER, actor, limit=200).rows} == sc.expected_member_ids("sales_bj")


def test_admin_pages_are_for_admins_only(sc, app):
    c = app.test_client()
    login(c, "mgr_east", PASSWORD)
    for url in ("/admin/permissions/", "/admin/permissions/explain", f"/admin/permissions/{sc.roles['Sales']}/{MEMBER}"):
        assert c.get(url).status_code == 403


def test_explainer_names_the_granting_role_and_rule(sc, client):
    mid = next(m for m, v in sc.members.items() if v["unit"] == sc.units["BJ"] and v["owner"] != sc.users["desk_sales"])
    resp = client.get(f"/admin/permissions/explain?user={sc.users['desk_sales']}&entity={MEMBER}&record={mid}&field=notes")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    # FrontDesk covers the record (its org unit), Sales does not (not the owner); notes hidden by Sales, editable by FrontDesk
    rows = html.split("<tbody>")[-1]
    front, sales = rows.split("FrontDesk</a>")[1].split("</tr>")[0], rows.split("Sales</a>")[1].split("</tr>")[0]
    assert "本部门" in front and "可编辑" in front and ">是<" in front
    assert "本人负责的记录" in sales and "隐藏" in sales and ">否<" in sales
    bad = client.get(f"/admin/permissions/explain?user={sc.users['desk_sales']}&entity={MEMBER}&record=abc")
    assert bad.status_code == 400 and "正整数" in bad.get_data(as_text=True)
    bad = client.get(f"/admin/permissions/explain?user={sc.users['desk_sales']}&entity={MEMBER}&field=nope")
    assert bad.status_code == 400


def test_unmask_on_the_web_is_audited_and_needs_the_right(sc, app):
    mgr = app.test_client()
    login(mgr, "mgr_east", PASSWORD)
    token = csrf_from(mgr.get("/home").get_data(as_text=True))
    mid = next(iter(sc.expected_member_ids("mgr_east")))
    assert mgr.post(f"/e/membership.member/{mid}/unmask/mobile").status_code == 400  # no CSRF token
    resp = mgr.post(f"/e/membership.member/{mid}/unmask/mobile", headers={"X-CSRFToken": token})
    assert resp.status_code == 200 and resp.get_json()["value"].replace(" ", "") == f"138{sc.members[mid]['n']:08d}"
    assert resp.headers["Cache-Control"] == "no-store"
    desk = app.test_client()
    login(desk, "desk_sh", PASSWORD)
    token = csrf_from(desk.get("/home").get_data(as_text=True))
    did = next(iter(sc.expected_member_ids("desk_sh")))
    resp = desk.post(f"/e/membership.member/{did}/unmask/mobile", headers={"X-CSRFToken": token})
    assert resp.status_code == 403
    with sc.services.engine.connect() as conn:
        events = conn.execute(select(pt.audit).where(pt.audit.c.category == "unmask")).mappings().all()
    assert [(e["actor_id"], e["record_id"]) for e in events] == [(sc.users["mgr_east"], mid)]
