"""The points journey in a real browser: the member page shows points, staff adjust and redeem from the desk."""
from __future__ import annotations

import pytest

from crmkit.apps.membership.ledger import LedgerService, check_invariants
from crmkit.runtime.actor import SYSTEM

from browser_support import launch_chromium, live_server, screenshot
from conftest import ADMIN_PASSWORD, ADMIN_USER
from ledger_support import make_member, make_plan

pytestmark = pytest.mark.browser


def test_points_journey(app):
    from playwright.sync_api import sync_playwright

    services = app.extensions["crmkit"]
    member = make_member(services)
    make_plan(services, per_yuan="1")
    services.records.create("membership.order", {"member": member, "amount": "680", "payment_status": "paid",
                                                 "ordered_at": "2026-05-20T10:00:00+08:00"}, SYSTEM)
    item = services.records.create("membership.reward_item", {"name": "品牌保温杯", "code": "CUP", "kind": "goods", "points": 200, "stock": 5}, SYSTEM)
    with live_server(app) as base, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN").new_page()
        page.set_default_timeout(10_000)
        page.goto(base + "/login/")
        page.fill("input[name=username]", ADMIN_USER)
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("[type=submit]")
        page.goto(f"{base}/e/membership.member/{member}")
        page.wait_for_selector("#points-panel [data-balance=reward]")
        assert page.inner_text("#points-panel [data-balance=reward]").strip() == "680"
        screenshot(page, "points-member-panel")
        page.click("#points-panel a.btn")
        page.fill("#adj-points", "50")
        page.fill("#adj-reason", "门店活动补录")
        page.click("form[action$='/adjust'] button[type=submit]")
        page.wait_for_selector(".page-header [data-balance=reward]")
        assert page.inner_text(".page-header [data-balance=reward]").strip() == "730"
        page.select_option("#red-item", str(item))
        page.fill("#red-qty", "2")
        page.click("form[action$='/redeem'] button[type=submit]")
        page.wait_for_function("() => (document.querySelector('.page-header [data-balance=reward]') || {innerText: ''}).innerText.trim() === '330'")  # null while the next page loads
        screenshot(page, "points-desk")
        browser.close()
    assert LedgerService(services.engine).balances(member)["reward"]["wallet"] == 330
    assert services.queries.get("membership.reward_item", item, SYSTEM)["stock"] == 3
    with services.engine.connect() as c:
        assert check_invariants(c) == []
