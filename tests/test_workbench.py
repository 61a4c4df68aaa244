"""The workbench start page: favourites, watched records, the pending-work empty state, role defaults."""
from __future__ import annotations

from sqlalchemy import select

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.storage import platform_tables as pt

from conftest import csrf_from, login


def test_start_page_shows_real_empty_states(client):
    html = client.get("/home").get_data(as_text=True)
    for text in ("常用功能", "关注的记录", "待办审批与任务", "暂无待办", "还没有关注的记录"):
        assert text in html


def test_star_a_report_and_see_it_on_the_start_page(client, services):
    page = client.get("/reports/membership.member_growth/")
    token = csrf_from(page.get_data(as_text=True))
    assert client.post("/workbench/favorite", data={"kind": "report", "target": "membership.member_growth"}).status_code == 400  # no CSRF
    resp = client.post("/workbench/favorite", data={"kind": "report", "target": "membership.member_growth", "csrf_token": token},
                       headers={"HX-Request": "true"})
    assert resp.status_code == 200 and "★" in resp.get_data(as_text=True)
    home = client.get("/home").get_data(as_text=True)
    assert "/reports/membership.member_growth/" in home.split('data-section="favorites"')[1].split('data-section="watched"')[0]
    with services.engine.connect() as conn:
        assert conn.execute(select(pt.favorite.c.target)).scalars().all() == ["membership.member_growth"]
    client.post("/workbench/favorite", data={"kind": "report", "target": "membership.member_growth", "csrf_token": token})
    with services.engine.connect() as conn:
        assert conn.execute(select(pt.favorite.c.target)).scalars().all() == []
    # The add form on the start page takes kind:target in one select.
    client.post("/workbench/favorite", data={"pick": "entity:membership.member", "csrf_token": token})
    assert "/e/membership.member/" in client.get("/home").get_data(as_text=True).split('data-section="favorites"')[1].split('data-section="watched"')[0]


def test_cannot_favourite_what_one_cannot_open(client):
    token = csrf_from(client.get("/home").get_data(as_text=True))
    resp = client.post("/workbench/favorite", data={"kind": "report", "target": "membership.nope", "csrf_token": token})
    assert resp.status_code == 403


def test_watch_a_record_from_its_page(client, services):
    mid = services.records.create("membership.member", {"name": "关注的会员", "mobile": "13911112222", "joined_on": "2025-01-01"}, SYSTEM)
    page = client.get(f"/e/membership.member/{mid}").get_data(as_text=True)
    assert f"/workbench/watch/membership.member/{mid}" in page
    token = csrf_from(page)
    assert "☆" in client.get(f"/workbench/watch/membership.member/{mid}").get_data(as_text=True)
    on = client.post(f"/workbench/watch/membership.member/{mid}", headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert "★" in on.get_data(as_text=True)
    home = client.get("/home").get_data(as_text=True)
    assert "关注的会员" in home and f"/e/membership.member/{mid}" in home
    assert client.post("/workbench/watch/membership.member/999999", headers={"X-CSRFToken": token}).status_code == 404
    services.records.delete("membership.member", mid, SYSTEM)
    assert "关注的会员" not in client.get("/home").get_data(as_text=True)  # a record one can no longer see drops out


def test_role_defaults_until_the_user_picks_their_own(app, client, services):
    from policy_support import PASSWORD, build_scenario

    sc = build_scenario(app)
    page = client.get("/admin/workbench", query_string={"role": sc.roles["FrontDesk"]})
    assert page.status_code == 200
    token = csrf_from(page.get_data(as_text=True))
    client.post("/admin/workbench", data={"role_id": sc.roles["FrontDesk"], "fav": ["report:membership.members_by_level", "dashboard:membership.overview"],
                                          "csrf_token": token})
    with services.engine.connect() as conn:
        stored = conn.execute(select(pt.workbench_default.c.favorites).where(pt.workbench_default.c.role_id == sc.roles["FrontDesk"])).scalar_one()
        audited = conn.execute(select(pt.audit.c.action).where(pt.audit.c.action == "workbench_default",  # install sets the template roles' own
                                                               pt.audit.c.subject == f"role:{sc.roles['FrontDesk']}")).scalars().all()
    assert stored == [{"kind": "report", "target": "membership.members_by_level"}, {"kind": "dashboard", "target": "membership.overview"}]
    assert audited == ["workbench_default"]
    desk = app.test_client()
    login(desk, "desk_sh", PASSWORD)
    section = desk.get("/home").get_data(as_text=True).split('data-section="favorites"')[1].split('data-section="watched"')[0]
    assert "/reports/membership.members_by_level/" in section and "/dashboards/membership.overview/" in section
    assert desk.get("/admin/workbench").status_code == 403
    token = csrf_from(desk.get("/home").get_data(as_text=True))
    desk.post("/workbench/favorite", data={"pick": "entity:membership.member", "csrf_token": token})
    section = desk.get("/home").get_data(as_text=True).split('data-section="favorites"')[1].split('data-section="watched"')[0]
    assert "/e/membership.member/" in section and "/reports/membership.members_by_level/" not in section
