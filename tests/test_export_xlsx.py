"""XLSX export: same rows, columns, scope, masking and audit as the CSV export; text cells only."""
from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from crmkit.runtime.actor import Actor
from crmkit.runtime.storage import platform_tables as pt

from conftest import login
from policy_support import PASSWORD, build_scenario


@pytest.fixture
def sc(app):
    return build_scenario(app)


def sheet(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    assert resp.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    wb = load_workbook(io.BytesIO(resp.get_data()))
    return wb.active


def test_xlsx_matches_csv_and_keeps_text_safe(sc, app):
    services = app.extensions["crmkit"]
    admin = Actor(id=None, username="system", is_admin=True)
    mid = next(m for m in sorted(sc.expected_member_ids("mgr_east")) if sc.members[m]["status"] == "active")
    row = services.queries.get("membership.member", mid, admin)
    services.records.update("membership.member", mid, {"name": "=1+1"}, admin, expected_version=row["row_version"])
    client = app.test_client()
    login(client, "mgr_east", PASSWORD)
    page = client.get("/e/membership.member/?ff=status&fo=eq&fv=active").get_data(as_text=True)
    assert "export.xlsx?" in page and "导出 Excel" in page
    ws = sheet(client.get("/e/membership.member/export.xlsx?ff=status&fo=eq&fv=active"))
    rows = [[c.value for c in r] for r in ws.iter_rows()]
    csv_text = client.get("/e/membership.member/export.csv?ff=status&fo=eq&fv=active").get_data(as_text=True)[1:]
    import csv

    csv_rows = list(csv.reader(io.StringIO(csv_text)))
    assert [[v or "" for v in r] for r in rows] == csv_rows
    expected = {m for m in sc.expected_member_ids("mgr_east") if sc.members[m]["status"] == "active"}
    assert len(rows) - 1 == len(expected)
    assert all(c.data_type == "s" for r in ws.iter_rows() for c in r if c.value is not None)  # no formulas, no numbers
    flat = [v for r in rows for v in r]
    assert "=1+1" not in flat and "'=1+1" in flat
    for m in sc.members.values():
        assert f"138{m['n']:08d}" not in flat  # masked
    with services.engine.connect() as conn:
        actions = conn.execute(select(pt.audit.c.action).where(pt.audit.c.category == "export")).scalars().all()
    assert sorted(actions) == ["export_csv", "export_xlsx"]


def test_xlsx_needs_export_permission_and_login(sc, app):
    client = app.test_client()
    assert client.get("/e/membership.member/export.xlsx").status_code in (302, 303)
    login(client, "desk_sh", PASSWORD)
    assert client.get("/e/membership.member/export.xlsx").status_code == 403
