"""The CRM roles on an org tree: a sales rep sees own leads plus the pool; a manager sees the org subtree;
the executive reads everything and writes nothing. Installed through the CLI, with demo data."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select, text

from conftest import make_settings
from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.cli import main
from crmkit.runtime.errors import PermissionDenied
from crmkit.runtime.installer import install
from crmkit.runtime.org.grants import resolve_grants
from crmkit.runtime.org.service import OrgService
from crmkit.runtime.org.tables import ab_role
from crmkit.runtime.web.app import create_app
from org_support import build_tree


def test_cli_installs_both_templates_with_demo_data_and_roles(empty_database_url, tmp_path):
    env = {"CRMKIT_DATABASE_URL": empty_database_url, "CRMKIT_VAR_DIR": str(tmp_path / "var"), "CRMKIT_SECRET_KEY": "cli-test-secret"}
    run = lambda args: CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert run(["init"]).exit_code == 0
    listing = run(["apps", "list"]).output
    assert "crm_sales" in listing and "crm_service" in listing
    r = run(["apps", "install", "crm_sales", "--demo", "--demo-size", "30"])
    assert r.exit_code == 0, r.output
    r = run(["apps", "install", "crm_service", "--demo", "--demo-size", "30"])
    assert r.exit_code == 0, r.output
    engine = create_engine(env["CRMKIT_DATABASE_URL"])
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM crm_account")).scalar_one() >= 5
        assert c.execute(text("SELECT count(*) FROM crm_sales_lead")).scalar_one() >= 10
        assert c.execute(text("SELECT count(*) FROM crm_service_ticket WHERE sla_state IS NULL")).scalar_one() == 0
        roles = {r[0] for r in c.execute(select(ab_role.c.name))}
    engine.dispose()
    assert {"CRM Sales Rep", "CRM Sales Manager", "CRM Service Agent", "CRM Service Manager", "CRM Executive"} <= roles


@pytest.fixture
def crm_web(databases, tmp_path):
    app = create_app(make_settings(databases.fresh("base"), tmp_path), testing=True)
    s = app.extensions["crmkit"]
    with app.app_context():
        for name in ("crm_sales", "crm_service"):
            install(s, name)  # creates the CRM roles with their grants (AppHooks.roles), before the web app syncs anything
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].session.remove()
        s.engine.dispose()


def make_user(app, units, username, role, unit):
    sm = app.appbuilder.sm
    with app.app_context():
        user = sm.add_user(username, username, "T", f"{username}@example.com", [sm.find_role(role)], "pass-12345-abc")
        uid = user.id
        app.extensions["sqlalchemy"].session.remove()
        OrgService(app.extensions["crmkit"].engine).assign_user(SYSTEM, uid, org_unit_id=units[unit], role_ids=[sm.find_role(role).id])
    return uid


def actor_of(app, uid, username):
    with app.extensions["crmkit"].engine.connect() as conn:
        g = resolve_grants(conn, uid)
    return Actor(id=uid, username=username, is_admin=False, permissions=g.permissions, org_unit_id=g.org_unit_id, role_ids=g.role_ids)


def test_rep_sees_own_and_pool_manager_sees_subtree_executive_reads_only(crm_web):
    app, s = crm_web, crm_web.extensions["crmkit"]
    units = build_tree(OrgService(s.engine))
    rep_sh = make_user(app, units, "rep_sh", "CRM Sales Rep", "sh_sales")
    rep_bj = make_user(app, units, "rep_bj", "CRM Sales Rep", "bj")
    mgr_east = make_user(app, units, "mgr_east", "CRM Sales Manager", "east")
    exec_ = make_user(app, units, "boss", "CRM Executive", "group")
    rep_sh_a, rep_bj_a = actor_of(app, rep_sh, "rep_sh"), actor_of(app, rep_bj, "rep_bj")
    mgr, boss = actor_of(app, mgr_east, "mgr_east"), actor_of(app, exec_, "boss")

    mine = s.records.create("crm_sales.lead", {"name": "上海线索", "owner": rep_sh}, rep_sh_a)
    theirs = s.records.create("crm_sales.lead", {"name": "北京线索", "owner": rep_bj}, rep_bj_a)
    pool = s.records.create("crm_sales.lead", {"name": "公海线索"}, SYSTEM)
    visible = lambda a: {r["id"] for r in s.queries.list("crm_sales.lead", a, limit=50).rows}
    assert visible(rep_sh_a) == {mine, pool}
    assert visible(rep_bj_a) == {theirs, pool}
    assert visible(mgr) == {mine}  # created in 上海销售部, under 华东区; 北京 and the system-created pool lead are outside
    assert visible(boss) == {mine, theirs, pool}
    with pytest.raises(PermissionDenied):
        s.records.create("crm_sales.lead", {"name": "不可写"}, boss)
    # a rep cannot write the conversion stamps (field rule)
    row = s.queries.get("crm_sales.lead", mine, rep_sh_a)
    from crmkit.runtime.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as exc:
        s.records.update("crm_sales.lead", mine, {"converted_at": "2026-01-01T00:00:00Z"}, rep_sh_a, expected_version=row["row_version"])
    assert "converted_at" in exc.value.field_errors
