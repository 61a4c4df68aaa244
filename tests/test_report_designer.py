"""The report designer: live preview on real data, saving through the metadata store, permissions."""
from __future__ import annotations

from sqlalchemy import select

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.storage import platform_tables as pt

from conftest import csrf_from, login


def form(**over):
    data = {"source": "membership.member", "label_zh": "按渠道", "label_en": "By channel", "g0": "join_channel", "m0_agg": "count",
            "chart": "bar", "sort_desc": "1", "scope": "personal"}
    data.update(over)
    return data


def test_designer_previews_real_data_and_saves_a_personal_report(client, services):
    for i, ch in enumerate(["store", "store", "online"]):
        services.records.create("membership.member", {"name": f"d{i}", "mobile": f"1360000000{i}", "joined_on": "2025-05-01", "join_channel": ch}, SYSTEM)
    page = client.get("/builder/reports/new")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "join_channel" in html and "level.name" in html  # one hop through the level link
    token = csrf_from(html)
    preview = client.post("/builder/reports/preview", data=form(csrf_token=token), headers={"HX-Request": "true"})
    body = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "门店现场" in body and "data-chart" in body
    assert ">2<" in body and ">1<" in body
    bad = client.post("/builder/reports/preview", data=form(csrf_token=token, g0="joined_on", g0b="", m0_agg="sum", m0_field="gender"))
    assert "number" in bad.get_data(as_text=True) or "数字" in bad.get_data(as_text=True)
    saved = client.post("/builder/reports/save", data=form(csrf_token=token))
    assert saved.status_code == 302
    key = saved.headers["Location"].split("/reports/")[1].strip("/")
    report = services.store.catalog().report(key)
    assert report.owner is not None and report.groups[0].field == "join_channel"
    with services.engine.connect() as conn:
        assert conn.execute(select(pt.audit.c.subject).where(pt.audit.c.category == "publish", pt.audit.c.subject == f"report:{key}")).first()
    assert client.get(f"/reports/{key}/").status_code == 200


def test_personal_reports_need_the_permission_and_stay_private(app, services, client):
    from policy_support import PASSWORD, build_scenario

    sc = build_scenario(app)
    desk = app.test_client()
    login(desk, "desk_sh", PASSWORD)
    assert desk.get("/builder/reports/new").status_code == 403  # neither builder nor personal-report permission
    from crmkit.runtime.permissions.admin import PermissionAdmin

    catalog = services.store.catalog()
    PermissionAdmin(services.engine, services.policy.rules, services.store.catalog).set_actions(
        sc.roles["FrontDesk"], catalog.entity("membership.member"), {"read", "create", "update", "report"}, actor_id=None)
    desk = app.test_client()
    login(desk, "desk_sh", PASSWORD)
    page = desk.get("/builder/reports/new")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'value="shared"' not in html  # no builder permission: personal only
    assert "id_number" not in html  # hidden from this role: not offered
    token = csrf_from(html)
    assert desk.post("/builder/reports/save", data=form(csrf_token=token, scope="shared")).status_code == 403
    saved = desk.post("/builder/reports/save", data=form(csrf_token=token, shared_roles="Manager"))
    key = saved.headers["Location"].split("/reports/")[1].strip("/")
    assert desk.get(f"/reports/{key}/").status_code == 200
    other = app.test_client()
    login(other, "sales_bj", PASSWORD)
    assert other.get(f"/reports/{key}/").status_code == 403
    manager = app.test_client()
    login(manager, "mgr_east", PASSWORD)
    assert manager.get(f"/reports/{key}/").status_code == 200  # shared with the Manager role
    assert desk.post("/builder/reports/preview", data=form(csrf_token=token, g0="id_number")).status_code == 200
    assert "id_number" in desk.post("/builder/reports/preview", data=form(csrf_token=token, g0="id_number")).get_data(as_text=True)
