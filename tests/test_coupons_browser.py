"""The front-desk coupon journey in a real browser: look up a code, see the coupon, redeem it."""
from __future__ import annotations

import pytest

from crmkit.apps.membership import coupons
from crmkit.runtime.actor import SYSTEM

from browser_support import launch_chromium, live_server, screenshot
from conftest import ADMIN_PASSWORD, ADMIN_USER
from ledger_support import make_member
from test_coupons import coupon, store, template

pytestmark = pytest.mark.browser


def test_front_desk_redeems_a_coupon(app):
    from playwright.sync_api import sync_playwright

    services = app.extensions["crmkit"]
    member = make_member(services)
    store(services, "SH01")
    tpl = template(services, name="满 100 减 20", store_codes=["SH01"], description="单笔满 100 元可用")
    cid = coupons.issue(services, tpl, member, SYSTEM)
    code = coupon(services, cid)["code"]
    with live_server(app) as base, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN").new_page()
        page.set_default_timeout(10_000)
        page.goto(base + "/login/")
        page.fill("input[name=username]", ADMIN_USER)
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("[type=submit]")
        page.goto(base + "/membership/coupons/redeem")
        page.fill("#cpn-code", code[:4].lower() + " " + code[4:])
        page.click("form[method=get] button[type=submit]")
        page.wait_for_selector("[data-status=issued]")
        page.fill("#cpn-amount", "60")
        page.select_option("#cpn-store", label="门店SH01 (SH01)")
        page.click("form[method=post] button[type=submit]")
        page.wait_for_selector(".alert-error")
        assert "100.00" in page.inner_text(".alert-error")
        page.fill("#cpn-amount", "168")
        screenshot(page, "coupon-redeem")
        page.click("form[method=post] button[type=submit]")
        page.wait_for_selector("[data-status=used]")
        screenshot(page, "coupon-redeemed")
        browser.close()
    assert coupon(services, cid)["status"] == "used" and str(coupon(services, cid)["discount"]) == "20.00"
