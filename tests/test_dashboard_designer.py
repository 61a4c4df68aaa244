"""The dashboard designer: design, preview, save and edit a grid of report widgets; per-role assignment; every widget
runs with the viewer's own scope; bad input is refused with nothing stored."""
from __future__ import annotations

import json

import re

from sqlalchemy import func, select

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.storage import platform_tables as pt

from conftest import csrf_from, login
from policy_support import PASSWORD, build_scenario

KPI = {"name": "all_members_kpi", "label": {"zh": "会员总数", "en": "All members"}, "source": "membership.member",
       "measures": [{"name": "n", "agg": "count"}], "output": {"type": "chart", "chart": "kpi"}}
MANAGERS_ONLY = {"name": "managers_only", "label": {"zh": "经理专用", "en": "Managers only"}, "source": "membership.member",
                 "groups": [{"field": "status"}], "measures": [{"name": "n", "agg": "count"}], "output": {"type": "table"},
                 "roles": ["Manager"]}


def grid_form(token, widgets, **over):
    data = {"csrf_token": token, "label_zh": "运营看板", "label_en": "Operations"}
    for i, w in enumerate(widgets):
        data.update({f"w{i}_{k}": v for k, v in w.items()})
    data.update(over)
    return data


def dashboard_count(services) -> int:
    with services.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(pt.document).where(pt.document.c.kind == "dashboard")).scalar_one()


def kpi_values(html: str) -> list[int]:
    return [int(v.replace(",", "")) for v in re.findall(r'class="kpi-value"[^>]*>([\d,]+)<', html)]


def seed(services, n=7):
    for i in range(n):
        services.records.create("membership.member", {"name": f"看板{i}", "mobile": f"1371000000{i}", "joined_on": "2025-03-01",
                                                      "join_channel": ("store", "online")[i % 2]}, SYSTEM)


def test_design_preview_save_and_edit_round_trip(client, services):
    seed(services)
    services.store.save([RawDocument("report", "membership", KPI, "test")])
    page = client.get("/builder/dashboards/new")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "membership.all_members_kpi" in html and "membership.member_growth" in html
    token = csrf_from(html)
    widgets = [{"report": "membership.member_gender", "order": "2", "width": "8", "height": "large", "title_zh": "性别", "title_en": "Gender"},
               {"report": "membership.all_members_kpi", "order": "1", "width": "4", "height": "small"}]
    preview = client.post("/builder/dashboards/preview", data=grid_form(token, widgets), headers={"HX-Request": "true"})
    body = preview.get_data(as_text=True)
    assert preview.status_code == 200 and kpi_values(body) == [7] and "data-chart" in body
    assert body.index("data-kpi") < body.index("性别")  # ordered by the order inputs
    saved = client.post("/builder/dashboards/save", data=grid_form(token, widgets))
    assert saved.status_code == 302
    key = re.match(r"/dashboards/([^/]+)/", saved.headers["Location"]).group(1)
    dash = services.store.catalog().dashboard(key)
    assert [(w.report, w.width, w.height) for w in dash.widgets] == [("membership.all_members_kpi", 4, "small"),
                                                                    ("membership.member_gender", 8, "large")]
    assert dash.widgets[1].title.get("en") == "Gender" and dash.label.get("zh") == "运营看板" and dash.roles == ()
    view = client.get(f"/dashboards/{key}/").get_data(as_text=True)
    assert kpi_values(view) == [7] and "grid-column: span 8" in view and "编辑仪表板" in view
    # Edit: the form comes back filled in; drop a widget, resize the other, save a new version of the same key.
    edit = client.get(f"/builder/dashboards/{key}/edit").get_data(as_text=True)
    assert 'value="membership.all_members_kpi" selected' in edit and 'value="运营看板"' in edit and 'name="edit"' in edit
    changed = grid_form(token, [{"report": "membership.all_members_kpi", "order": "1", "width": "12", "height": "medium"}],
                        edit=key, label_en="Operations v2")
    assert client.post("/builder/dashboards/save", data=changed).headers["Location"] == f"/dashboards/{key}/"
    dash = services.store.catalog().dashboard(key)
    assert [(w.report, w.width, w.height) for w in dash.widgets] == [("membership.all_members_kpi", 12, "medium")]
    assert dash.label.get("en") == "Operations v2" and len(services.store.history("dashboard", key)) == 2
    client.get("/locale/en")
    english = client.get(f"/dashboards/{key}/").get_data(as_text=True)
    assert "Operations v2" in english and kpi_values(english) == [7]


def test_editing_a_shipped_dashboard_keeps_the_template_files_and_base(client, services):
    from pathlib import Path

    import crmkit.apps.membership as membership_app

    shipped = Path(membership_app.__path__[0]) / "dashboards" / "overview.json"
    before_file = shipped.read_text(encoding="utf-8")
    token = csrf_from(client.get("/builder/dashboards/membership.overview/edit").get_data(as_text=True))
    form = grid_form(token, [{"report": "membership.member_growth", "width": "12", "height": "large"}], edit="membership.overview")
    assert client.post("/builder/dashboards/save", data=form).status_code == 302
    dash = services.store.catalog().dashboard("membership.overview")
    assert [w.report for w in dash.widgets] == ["membership.member_growth"] and dash.description.get("zh")  # description kept
    with services.engine.connect() as conn:
        base = conn.execute(select(pt.template_base.c.body).where(pt.template_base.c.kind == "dashboard",
                                                                  pt.template_base.c.key == "membership.overview")).scalar()
    shipped_widgets = json.loads(before_file)["widgets"]
    assert base["widgets"] == shipped_widgets and len(base["widgets"]) > 1  # the installed original stays the base a template upgrade merges with
    assert shipped.read_text(encoding="utf-8") == before_file


def test_bad_input_is_refused_with_a_clear_error_and_nothing_stored(client, services):
    token = csrf_from(client.get("/builder/dashboards/new").get_data(as_text=True))
    before = dashboard_count(services)
    good = {"report": "membership.member_gender", "width": "6", "height": "medium"}
    cases = [
        ([dict(good, report="membership.no_such_report")], "membership.no_such_report"),
        ([], "at least one widget"),
        ([dict(good, width="0")], "1 to 12"),
        ([dict(good, width="13")], "1 to 12"),
        ([dict(good, width="wide")], "1 to 12"),
        ([dict(good, height="huge")], "small, medium or large"),
        ([dict(good, order="first")], "order"),
    ]
    client.get("/locale/en")
    english = client.get("/builder/dashboards/new").get_data(as_text=True)
    assert "New dashboard" in english and "Width (1–12 columns)" in english and "新建仪表板" not in english
    for widgets, message in cases:
        resp = client.post("/builder/dashboards/save", data=grid_form(token, widgets))
        assert resp.status_code == 400, (widgets, resp.status_code)
        assert message in resp.get_data(as_text=True), (widgets, resp.get_data(as_text=True)[:300])
        preview = client.post("/builder/dashboards/preview", data=grid_form(token, widgets)).get_data(as_text=True)
        assert "data-problems" in preview and message in preview
    resp = client.post("/builder/dashboards/save", data=grid_form(token, [good], label_zh="", label_en=""))
    assert resp.status_code == 400 and "title" in resp.get_data(as_text=True)
    resp = client.post("/builder/dashboards/save", data=grid_form(token, [good], roles="NoSuchRole"))
    assert resp.status_code == 400 and "NoSuchRole" in resp.get_data(as_text=True)
    assert client.post("/builder/dashboards/save", data={k: v for k, v in grid_form(token, [good]).items() if k != "csrf_token"}).status_code == 400
    assert dashboard_count(services) == before


def test_role_assignment_scoped_widgets_and_unavailable_tiles(app, services, client):
    sc = build_scenario(app)
    services.store.save([RawDocument("report", "membership", KPI, "test"), RawDocument("report", "membership", MANAGERS_ONLY, "test")])
    token = csrf_from(client.get("/builder/dashboards/new").get_data(as_text=True))
    widgets = [{"report": "membership.all_members_kpi", "width": "6", "height": "small"},
               {"report": "membership.managers_only", "width": "6", "height": "medium", "title_zh": "经理看板", "title_en": "Managers"}]
    saved = client.post("/builder/dashboards/save", data=grid_form(token, widgets, label_zh="区域看板", label_en="Area board",
                                                                    roles=["Manager", "FrontDesk"], workbench_default="1"))
    key = re.match(r"/dashboards/([^/]+)/", saved.headers["Location"]).group(1)
    only_managers = client.post("/builder/dashboards/save", data=grid_form(token, widgets[:1], label_zh="经理专属看板", label_en="Manager board",
                                                                            roles="Manager"))
    manager_key = re.match(r"/dashboards/([^/]+)/", only_managers.headers["Location"]).group(1)

    manager, desk, sales = app.test_client(), app.test_client(), app.test_client()
    login(manager, "mgr_east", PASSWORD)
    login(desk, "desk_sh", PASSWORD)
    login(sales, "sales_bj", PASSWORD)
    # The manager: both dashboards in the menu; totals are the subtree's only; the Manager-only report shows data.
    home = manager.get("/home").get_data(as_text=True)
    assert f"/dashboards/{key}/" in home and f"/dashboards/{manager_key}/" in home and "经理专属看板" in home
    view = manager.get(f"/dashboards/{key}/").get_data(as_text=True)
    assert kpi_values(view) == [len(sc.expected_member_ids("mgr_east"))] and "data-widget-unavailable" not in view
    assert manager.get(f"/dashboards/{manager_key}/").status_code == 200
    # Front desk: the shared board only, its own unit's total, and a "not available" tile instead of the manager report.
    home = desk.get("/home").get_data(as_text=True)
    assert f"/dashboards/{key}/" in home and f"/dashboards/{manager_key}/" not in home
    favorites = home.split('data-section="favorites"')[1].split('data-section="watched"')[0]
    assert "区域看板" in favorites and "经理专属看板" not in favorites  # the admin made it a workbench default of the role
    view = desk.get(f"/dashboards/{key}/").get_data(as_text=True)
    expected = len(sc.expected_member_ids("desk_sh"))
    assert kpi_values(view) == [expected] and expected < len(sc.members)
    assert "data-widget-unavailable" in view and "你无权查看此组件的报表" in view and "经理看板" in view
    assert "data-widget=\"membership.managers_only\"" not in view and "lost" not in view.lower().split("data-widget-unavailable")[1][:600]
    assert desk.get(f"/dashboards/{manager_key}/").status_code == 403
    assert desk.get("/builder/dashboards/new").status_code == 403  # no builder permission
    assert desk.post("/builder/dashboards/save", data=grid_form(csrf_from(home), widgets[:1])).status_code == 403
    # A role the dashboard is not assigned to: no menu entry, 403.
    home = sales.get("/home").get_data(as_text=True)
    assert f"/dashboards/{key}/" not in home and sales.get(f"/dashboards/{key}/").status_code == 403


def test_a_dashboard_assigned_to_nobody_is_listed_only_for_those_who_may_run_one_of_its_widgets(app, services, client):
    build_scenario(app)
    services.store.save([RawDocument("report", "membership", KPI, "test"), RawDocument("report", "membership", MANAGERS_ONLY, "test")])
    token = csrf_from(client.get("/builder/dashboards/new").get_data(as_text=True))
    saved = client.post("/builder/dashboards/save", data=grid_form(token, [{"report": "membership.managers_only", "width": "6", "height": "medium"}],
                                                                    label_zh="经理数据看板", label_en="Manager data board"))
    closed = re.match(r"/dashboards/([^/]+)/", saved.headers["Location"]).group(1)
    saved = client.post("/builder/dashboards/save", data=grid_form(token, [{"report": "membership.all_members_kpi", "width": "6", "height": "small"}],
                                                                    label_zh="全员看板", label_en="Everyone's board"))
    open_ = re.match(r"/dashboards/([^/]+)/", saved.headers["Location"]).group(1)
    manager, desk = app.test_client(), app.test_client()
    login(manager, "mgr_east", PASSWORD)
    login(desk, "desk_sh", PASSWORD)
    home = desk.get("/home").get_data(as_text=True)
    assert f"/dashboards/{closed}/" not in home and "经理数据看板" not in home  # every widget would be "not available"
    assert desk.get(f"/dashboards/{closed}/").status_code == 403
    assert f"/dashboards/{open_}/" in home and desk.get(f"/dashboards/{open_}/").status_code == 200
    home = manager.get("/home").get_data(as_text=True)
    assert f"/dashboards/{closed}/" in home and f"/dashboards/{open_}/" in home
    assert "data-widget-unavailable" not in manager.get(f"/dashboards/{closed}/").get_data(as_text=True)
