"""Editing saved reports in the designer: personal reports in place, template-shipped ones as a new version of the
stored document (the shipped files untouched) or as a copy; what the form cannot express survives the edit."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.reports import run_report
from crmkit.runtime.storage import platform_tables as pt

from conftest import csrf_from, login
from policy_support import PASSWORD, build_scenario


def form(**over):
    data = {"source": "membership.member", "label_zh": "按渠道", "label_en": "By channel", "g0": "join_channel", "m0_agg": "count",
            "chart": "table", "scope": "personal"}
    data.update(over)
    return data


def key_of(resp) -> str:
    assert resp.status_code == 302, resp.get_data(as_text=True)[:400]
    return resp.headers["Location"].split("/reports/")[1].strip("/")


def test_personal_report_edited_in_place_with_results(client, services):
    genders = ["male", "male", "female", None, "male"]
    for i, g in enumerate(genders):
        services.records.create("membership.member", {"name": f"e{i}", "mobile": f"1350000000{i}", "joined_on": "2025-05-01",
                                                      "join_channel": ("store", "online")[i % 2], "gender": g}, SYSTEM)
    token = csrf_from(client.get("/builder/reports/new").get_data(as_text=True))
    key = key_of(client.post("/builder/reports/save", data=form(csrf_token=token)))
    page = client.get(f"/reports/{key}/").get_data(as_text=True)
    assert f"/builder/reports/{key}/edit" in page
    edit = client.get(f"/builder/reports/{key}/edit").get_data(as_text=True)
    assert 'value="join_channel" selected' in edit and 'value="按渠道"' in edit and 'name="edit"' in edit and 'value="in_place"' in edit
    changed = form(csrf_token=token, edit=key, mode="in_place", g0="gender", label_zh="按性别", label_en="By gender", m0_name="m0")
    preview = client.post("/builder/reports/preview", data=changed).get_data(as_text=True)
    assert "男" in preview and ">3<" in preview
    assert key_of(client.post("/builder/reports/save", data=changed)) == key
    report = services.store.catalog().report(key)
    assert report.groups[0].field == "gender" and report.label.get("en") == "By gender" and report.owner is not None
    assert [h["version"] for h in services.store.history("report", key)] == [1, 2]
    result = run_report(services, Actor(id=None, username="system", is_admin=True), report, {}, locale="zh")
    assert {r.cells[0].key: r.values["m0"] for r in result.rows} == {"male": 3, "female": 1, None: 1}
    html = client.get(f"/reports/{key}/").get_data(as_text=True)
    assert "按性别" in html and "男" in html
    # Personal → shared is not an in-place change.
    resp = client.post("/builder/reports/save", data=dict(changed, scope="shared"))
    assert resp.status_code == 400 and len(services.store.history("report", key)) == 2


def test_template_report_in_place_keeps_prompts_and_shipped_files(client, services):
    import crmkit.apps.membership as membership_app

    shipped = Path(membership_app.__path__[0]) / "reports" / "members_by_level.json"
    before_file = shipped.read_text(encoding="utf-8")
    edit = client.get("/builder/reports/membership.members_by_level/edit").get_data(as_text=True)
    assert 'value="level" selected' in edit and 'value="gender" selected' in edit and "data-edit-note" in edit
    token = csrf_from(edit)
    data = form(csrf_token=token, edit="membership.members_by_level", mode="in_place", scope="shared", g0="level", g1="join_channel",
                m0_agg="count", m0_name="members", m1_agg="avg", m1_field="total_spent", m1_name="avg_spent", chart="bar", sort_desc="1",
                label_zh="会员等级与渠道", label_en="Members by level and channel")
    assert key_of(client.post("/builder/reports/save", data=data)) == "membership.members_by_level"
    report = services.store.catalog().report("membership.members_by_level")
    assert [g.field for g in report.groups] == ["level", "join_channel"]
    assert [p.name for p in report.prompts] == ["joined", "status"]  # what the form cannot express is kept
    assert [m.name for m in report.measures] == ["members", "avg_spent", "share"] and report.measure("avg_spent").format == "money"
    assert report.measure("members").label.get("zh") == "会员数"
    relabel = dict(data, m1_agg="max")  # a changed measure does not keep the old one's label
    assert key_of(client.post("/builder/reports/save", data=relabel)) == "membership.members_by_level"
    assert services.store.catalog().report("membership.members_by_level").measure("avg_spent").label is None
    assert key_of(client.post("/builder/reports/save", data=data)) == "membership.members_by_level"
    with services.engine.connect() as conn:
        base = conn.execute(select(pt.template_base.c.body).where(pt.template_base.c.kind == "report",
                                                                  pt.template_base.c.key == "membership.members_by_level")).scalar()
    assert [g["field"] for g in base["groups"]] == ["level", "gender"]  # the installed original stays the upgrade base
    assert shipped.read_text(encoding="utf-8") == before_file
    assert client.get("/reports/membership.members_by_level/").status_code == 200
    # Save as a copy: a new shared report, the edited one unchanged.
    copy_key = key_of(client.post("/builder/reports/save", data=dict(data, mode="copy", g1="", label_zh="副本", label_en="Copy")))
    assert copy_key.startswith("membership.r_")
    assert [g.field for g in services.store.catalog().report(copy_key).groups] == ["level"]
    assert [g.field for g in services.store.catalog().report("membership.members_by_level").groups] == ["level", "join_channel"]
    # Bad input: nothing stored.
    versions = len(services.store.history("report", "membership.members_by_level"))
    bad = client.post("/builder/reports/save", data=dict(data, m1_agg="sum", m1_field="gender"))
    assert bad.status_code == 400 and len(services.store.history("report", "membership.members_by_level")) == versions
    assert client.get("/builder/reports/membership.no_such/edit").status_code == 404


def test_only_builders_edit_shared_reports_and_only_owners_their_own(app, services, client):
    sc = build_scenario(app)
    from crmkit.runtime.permissions.admin import PermissionAdmin

    catalog = services.store.catalog()
    PermissionAdmin(services.engine, services.policy.rules, services.store.catalog).set_actions(
        sc.roles["FrontDesk"], catalog.entity("membership.member"), {"read", "create", "update", "report"}, actor_id=None)
    desk, manager = app.test_client(), app.test_client()
    login(desk, "desk_sh", PASSWORD)
    login(manager, "mgr_east", PASSWORD)
    token = csrf_from(desk.get("/builder/reports/new").get_data(as_text=True))
    mine = key_of(desk.post("/builder/reports/save", data=form(csrf_token=token, shared_roles="Manager")))
    assert desk.get(f"/builder/reports/{mine}/edit").status_code == 200
    assert desk.get("/builder/reports/membership.members_by_level/edit").status_code == 403  # shipped: builder only
    assert "data-edit-report" not in desk.get("/reports/membership.members_by_level/").get_data(as_text=True)
    before = services.store.catalog().report("membership.members_by_level")
    resp = desk.post("/builder/reports/save", data=form(csrf_token=token, edit="membership.members_by_level", mode="in_place", scope="shared"))
    assert resp.status_code == 403 and services.store.catalog().report("membership.members_by_level") == before
    # The manager may open the shared personal report but not change it.
    assert manager.get(f"/reports/{mine}/").status_code == 200
    assert manager.get(f"/builder/reports/{mine}/edit").status_code == 403
    assert manager.post("/builder/reports/save", data=form(csrf_token=csrf_from(manager.get("/home").get_data(as_text=True)),
                                                           edit=mine, mode="in_place", g0="gender")).status_code == 403
    assert services.store.catalog().report(mine).groups[0].field == "join_channel"
