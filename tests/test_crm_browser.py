"""Browser journeys for the CRM templates: a customer submits the public ticket and lead forms, then staff
see them in the ticket and lead lists (with the live SLA state) and open the ticket detail."""
from __future__ import annotations

import re

import pytest

from browser_support import launch_chromium, live_server, screenshot
from conftest import ADMIN_PASSWORD, ADMIN_USER
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.installer import install

pytestmark = pytest.mark.browser


@pytest.fixture
def crm_site(make_app):
    app = make_app("base")
    s = app.extensions["crmkit"]
    install(s, "crm_sales", demo=True, demo_size=30)
    install(s, "crm_service", demo=True, demo_size=30)
    from crmkit.runtime.web.permissions import sync_entity_permissions

    with app.app_context():
        sync_entity_permissions(app, s)
    with live_server(app) as url:
        yield url, s


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


def test_public_ticket_and_lead_forms_reach_the_staff_lists(browser, crm_site):
    base, s = crm_site
    customer = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN").new_page()
    customer.goto(base + "/p/crm/ticket")
    box = customer.locator("#website").bounding_box()
    assert box is None or box["x"] + box["width"] < 0  # the honeypot is off-screen: people never fill it
    screenshot(customer, "crm-public-ticket-form")
    customer.fill("#f-requester_name", "周敏")
    customer.fill("#f-requester_mobile", "13512345678")
    customer.fill("#f-order_ref", "SO20260301001")
    customer.fill("#f-subject", "浏览器提交：订单物流三天未更新")
    customer.select_option("#f-category", "delivery")
    customer.fill("#f-description", "快递单号查询不到，麻烦尽快处理。")
    customer.click("button[type=submit]")
    number = customer.locator("#ticket-number").inner_text()
    assert re.fullmatch(r"T\d{7}", number)
    screenshot(customer, "crm-public-ticket-thanks")
    customer.goto(base + "/p/crm/lead")
    customer.fill("#f-name", "陈静")
    customer.fill("#f-company", "深圳启明电子有限公司")
    customer.fill("#f-mobile", "13600001111")
    customer.click("button[type=submit]")
    customer.wait_for_selector("text=销售顾问将在一个工作日内与您联系")

    staff = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN").new_page()
    staff.set_default_timeout(10_000)
    staff.goto(base + "/login/")
    staff.fill("input[name=username]", ADMIN_USER)
    staff.fill("input[name=password]", ADMIN_PASSWORD)
    staff.click("[type=submit]")
    staff.wait_for_url(re.compile(r"/home$"))
    staff.goto(base + "/e/crm_service.ticket/")
    row = staff.locator("#list-region tbody tr", has_text="浏览器提交").first
    assert row.is_visible() and "正常" in row.inner_text()  # the live SLA state in the list
    screenshot(staff, "crm-ticket-list")
    row.locator("a").first.click()
    staff.wait_for_url(re.compile(r"/e/crm_service\.ticket/\d+$"))
    assert "SO20260301001" in staff.content()
    screenshot(staff, "crm-ticket-detail")
    staff.goto(base + "/e/crm_sales.lead/")
    assert staff.locator("#list-region tbody tr", has_text="陈静").first.is_visible()
    screenshot(staff, "crm-lead-list")
    staff.goto(base + "/e/crm_sales.opportunity/")
    screenshot(staff, "crm-opportunity-list")
    ticket = s.queries.list("crm_service.ticket", SYSTEM, filter={"field": "order_ref", "op": "eq", "value": "SO20260301001"}, limit=1).rows[0]
    assert (ticket["channel"], ticket["number"]) == ("web", number)
