"""The import wizard in a real browser: upload an XLSX, adjust the mapping, dry run, start, watch progress, download errors."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from openpyxl import Workbook

from crmkit.runtime.imports import ImportEngine
from crmkit.runtime.imports.actor import actor_by_username

from browser_support import launch_chromium, live_server, log_in, screenshot
from conftest import ADMIN_PASSWORD, ADMIN_USER
from import_support import members

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


def make_workbook(path):
    wb = Workbook()
    ws = wb.active
    ws.append(["客户姓名", "联系方式", None, "入会日期", "备注"])
    ws.append([None, "手机", "邮箱", None, None])
    ws.merge_cells("A1:A2")
    ws.merge_cells("B1:C1")
    ws.merge_cells("D1:D2")
    ws.merge_cells("E1:E2")
    ws.append(["张三", 13800000001, "z@example.com", dt.datetime(2023, 7, 1), "老客户"])
    ws.append(["李四", "13800000002", None, 45123, None])
    ws.append(["王五", "138-bad", "w@example.com", "2022/1/9", None])
    wb.save(path)


def test_import_wizard_with_a_real_upload(browser, app, tmp_path):
    services = app.extensions["crmkit"]
    path = tmp_path / "客户名单.xlsx"
    make_workbook(path)
    with live_server(app) as base:
        context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN", accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(10_000)
        log_in(page, base, ADMIN_USER, ADMIN_PASSWORD)
        page.goto(base + "/e/membership.member/")
        page.get_by_role("link", name="导入").click()
        page.wait_for_url(re.compile(r"/import$"))
        page.set_input_files("input[name=file]", str(path))
        screenshot(page, "import-1-upload")
        page.get_by_role("button", name="下一步").click()
        page.wait_for_url(re.compile(r"/mapping$"))
        # merged headers were read: the lower row names the columns, the samples show Excel dates
        assert page.locator("select[aria-label='手机']").input_value() == "mobile"
        assert page.locator("select[aria-label='客户姓名']").input_value() == "name"
        page.locator("select[aria-label='备注']").select_option("notes")
        assert page.locator("tr:has(th:text-is('入会日期')) .sample").first.inner_text() == "2023-07-01"
        screenshot(page, "import-2-mapping")
        page.get_by_role("button", name="下一步").click()
        page.wait_for_url(re.compile(r"/options$"))
        page.check("input[name=mode][value=upsert]")
        page.select_option("select[name=key]", "mobile")
        page.get_by_role("button", name="试导入（不写入）").click()
        page.wait_for_selector("#dry-run")
        assert page.locator("#dry-run .import-counts .ok .count").first.inner_text() == "2"
        assert "138-bad" not in page.content() and page.locator("#dry-run tbody tr").count() == 1
        screenshot(page, "import-3-dry-run")
        assert members(services) == {}
        page.get_by_role("button", name="开始导入").click()
        page.wait_for_url(re.compile(r"/imports/\d+$"))
        assert page.locator("[data-status=pending]").is_visible()
        run_id = int(page.url.rsplit("/", 1)[1])
        # No job runner is composed yet (imports/submit.py): the test plays the worker.
        ImportEngine(services).run(run_id, actor_by_username(services.engine, "admin"))
        page.wait_for_selector("[data-status=succeeded]")  # the htmx poll picks the end up
        assert page.locator("[data-count=created]").inner_text() == "2" and page.locator("[data-count=errors]").inner_text() == "1"
        screenshot(page, "import-4-results")
        with page.expect_download() as dl:
            page.get_by_role("link", name="下载错误报告（CSV）").click()
        report = dl.value.path().read_text("utf-8-sig")
        assert "138-bad" in report and "王五" in report and "错误信息" in report
        context.close()
    got = members(services)
    assert set(got) == {"13800000001", "13800000002"} and got["13800000001"]["notes"] == "老客户"
