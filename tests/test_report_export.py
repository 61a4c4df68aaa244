"""Spreadsheet cell safety (shared by every export) and the ``report.export`` job handler."""
from __future__ import annotations

import csv
import decimal
import io
from pathlib import Path

import pytest
from openpyxl import load_workbook

from crmkit.runtime.reports.export import register_report_jobs, report_export_job, to_csv, to_xlsx
from crmkit.runtime.spreadsheet import csv_value, neutralise, xlsx_value

PAYLOADS = ["=1+1", "+1", "-1+2", "@SUM(A1:A2)", "\t=1", "\r=1", " =1", "  +cmd|' /C calc'!A0", "\x01=1", "\u3000=1", "\ufeff@x",
            "=HYPERLINK(\"http://evil\",\"x\")", "-", "@"]
SAFE = ["普通文本", "a=b", "1-2", "user@example.com", "", "中文=公式"]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_formula_payloads_are_neutralised(payload):
    assert neutralise(payload) == "'" + payload
    assert csv_value(payload) == "'" + payload


@pytest.mark.parametrize("value", SAFE)
def test_plain_text_is_left_alone(value):
    assert neutralise(value) == value


def test_numbers_stay_numbers_and_long_digits_stay_text():
    assert csv_value(-5) == -5 and xlsx_value(decimal.Decimal("-1.5")) == (decimal.Decimal("-1.5"), None)
    assert xlsx_value("110101199001011237") == ("110101199001011237", "@")
    assert xlsx_value("11010119900101123X") == ("11010119900101123X", "@")
    assert xlsx_value("13800138000") == ("13800138000", "@")
    assert xlsx_value("1234") == ("1234", None)


def test_xlsx_round_trip_keeps_text_and_quotes():
    body = to_xlsx(["名称", "数量"], [["=cmd", 3], ["110101199001011237", decimal.Decimal("2.50")], ["\x07bell", None]], "报表/测试")
    ws = load_workbook(io.BytesIO(body)).active
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0] == ("名称", "数量")
    assert rows[1] == ("'=cmd", 3)
    assert rows[2][0] == "110101199001011237" and ws.cell(row=3, column=1).number_format == "@"
    assert rows[3][0] == "bell"  # control characters a workbook cannot hold are dropped
    text = to_csv(["a"], [["-2+3"], [7]]).decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(text))) == [["a"], ["'-2+3"], ["7"]]


class FakeContext:
    def __init__(self, services):
        self.services = services
        self.job_id = 7
        self.attempt = 1
        self.steps = []

    def progress(self, done, total, message=None):
        self.steps.append((done, total, message))

    def cancel_requested(self):
        return False


class FakeRegistry:
    def __init__(self):
        self.handlers = {}

    def register(self, kind, handler):
        self.handlers[kind] = handler


def test_export_job_handler_writes_the_report(app, services):
    from crmkit.runtime.actor import SYSTEM

    from core_support import admin_id

    for i, name in enumerate(["=evil()", "普通"]):
        lv = services.records.create("membership.level", {"name": name, "code": f"J{i}", "level_value": i}, SYSTEM)
        for j in range(i + 2):
            services.records.create("membership.member", {"name": f"m{i}{j}", "mobile": f"137000{i}{j:04d}", "joined_on": "2025-02-03", "level": lv}, SYSTEM)
    registry = FakeRegistry()
    register_report_jobs(registry)
    assert registry.handlers["report.export"] is report_export_job
    ctx = FakeContext(services)
    out = report_export_job(ctx, {"report": "membership.members_by_level", "format": "xlsx", "actor_id": admin_id(services), "locale": "zh"})
    path = Path(services.settings.var_dir) / "exports" / out["file"]
    ws = load_workbook(path).active
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0][:3] == ("会员等级", "性别", "会员数")  # every group level, then the measures
    assert ("'=evil()", "（空）", 2) in [r[:3] for r in rows] and ("普通", "（空）", 3) in [r[:3] for r in rows]
    assert rows[-1][0] == "合计" and out["rows"] == 2
    assert ctx.steps[-1][:2] == (1, 1)


def test_export_job_refuses_an_unknown_user(app, services):
    with pytest.raises(PermissionError):
        report_export_job(FakeContext(services), {"report": "membership.members_by_level", "actor_id": 999999})


def test_large_export_runs_as_a_job_and_is_downloaded_by_its_owner_only(app, client, services):
    from conftest import csrf_from

    from crmkit.runtime.actor import SYSTEM

    lv = services.records.create("membership.level", {"name": "=HYPERLINK()", "code": "JX", "level_value": 1}, SYSTEM)
    services.records.create("membership.member", {"name": "甲", "mobile": "13700000001", "joined_on": "2025-02-03", "level": lv}, SYSTEM)
    token = csrf_from(client.get("/reports/membership.members_by_level/").get_data(as_text=True))
    assert client.post("/reports/membership.members_by_level/export-job", data={}).status_code == 400  # CSRF first
    resp = client.post("/reports/membership.members_by_level/export-job", data={"csrf_token": token, "format": "xlsx"})
    assert resp.status_code == 302 and "/jobs/" in resp.headers["Location"]
    job_id = int(resp.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    assert client.get(f"/reports/exports/{job_id}").status_code == 404  # not run yet
    services.jobs.execute(job_id)
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert f"/reports/exports/{job_id}" in page
    download = client.get(f"/reports/exports/{job_id}")
    assert download.status_code == 200 and download.headers["Cache-Control"] == "no-store"
    rows = list(load_workbook(__import__("io").BytesIO(download.data)).active.iter_rows(values_only=True))
    assert ("'=HYPERLINK()", "（空）", 1) in [r[:3] for r in rows]
    from conftest import login

    stranger = app.test_client()
    with app.app_context():
        role = app.appbuilder.sm.add_role("Nobody")
        app.appbuilder.sm.add_user("nobody", "No", "Body", "nobody@example.com", role, "nobody-pass-123")
    login(stranger, "nobody", "nobody-pass-123")
    assert stranger.get(f"/reports/exports/{job_id}").status_code == 404  # someone else's job
