"""CSV export: the list's filters and columns, the export permission, masking, formula neutralising, audit."""
from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import func, select

from crmkit.runtime.actor import Actor
from crmkit.runtime.storage import platform_tables as pt
from crmkit.runtime.web.export import neutralise

from conftest import login
from policy_support import PASSWORD, build_scenario


@pytest.fixture
def sc(app):
    return build_scenario(app)


def rows_of(resp):
    text = resp.get_data(as_text=True)
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def test_neutralise():
    for bad in ("=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert neutralise(bad) == "'" + bad
    assert neutralise("张三") == "张三" and neutralise("") == ""


def test_export_follows_scope_hidden_fields_masking_and_filters(sc, app):
    client = app.test_client()
    login(client, "mgr_east", PASSWORD)
    page = client.get("/e/membership.member/?ff=status&fo=eq&fv=active").get_data(as_text=True)
    assert "/e/membership.member/export.csv?" in page and "导出 CSV" in page  # the list offers its own filters for export
    resp = client.get("/e/membership.member/export.csv?ff=status&fo=eq&fv=active")
    assert resp.status_code == 200 and resp.mimetype == "text/csv" and resp.headers["Cache-Control"] == "no-store"
    rows = rows_of(resp)
    body = rows[1:]
    expected = {m for m in sc.expected_member_ids("mgr_east") if sc.members[m]["status"] == "active"}
    assert len(body) == len(expected) and expected
    text = resp.get_data(as_text=True)
    for m in sc.members.values():
        assert f"138{m['n']:08d}" not in text  # mobiles are masked
    names = {sc.members[m]["n"] for m in expected}
    assert {f"会员{n:03d}" for n in names} <= set(c for r in body for c in r)
    with app.app_context():
        with app.extensions["crmkit"].engine.connect() as conn:
            ev = conn.execute(select(pt.audit).where(pt.audit.c.category == "export")).mappings().all()
    assert len(ev) == 1 and ev[0]["changes"]["rows"] == len(expected) and ev[0]["actor_id"] == sc.users["mgr_east"]


def test_export_needs_the_export_permission(sc, app):
    client = app.test_client()
    login(client, "desk_sh", PASSWORD)
    assert "export.csv" not in client.get("/e/membership.member/").get_data(as_text=True)
    resp = client.get("/e/membership.member/export.csv")
    assert resp.status_code == 403 and "export" in resp.get_data(as_text=True)
    with app.extensions["crmkit"].engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(pt.audit).where(pt.audit.c.category == "export")).scalar() == 0


def test_export_hides_hidden_columns_and_neutralises_formulas(sc, app):
    services = app.extensions["crmkit"]
    admin = Actor(id=None, username="system", is_admin=True)
    mid = next(m for m in sc.expected_member_ids("lost_hq"))
    row = services.queries.get("membership.member", mid, admin)
    services.records.update("membership.member", mid, {"name": "=HYPERLINK(\"http://x\")", "notes": "secret note"}, admin,
                            expected_version=row["row_version"])
    client = app.test_client()
    login(client, "lost_hq", PASSWORD)
    resp = client.get("/e/membership.member/export.csv")
    rows = rows_of(resp)
    assert len(rows) - 1 == len(sc.expected_member_ids("lost_hq"))
    cells = [c for r in rows for c in r]
    assert "'=HYPERLINK(\"http://x\")" in cells and "=HYPERLINK(\"http://x\")" not in cells
    assert "secret note" not in resp.get_data(as_text=True)


def test_export_with_a_bad_filter_is_a_400(sc, app):
    client = app.test_client()
    login(client, "mgr_east", PASSWORD)
    resp = client.get("/e/membership.member/export.csv?ff=joined_on&fo=eq&fv=not-a-date")
    assert resp.status_code == 400
