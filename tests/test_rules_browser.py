"""visible_if / required_if in a real browser: changing a value shows, hides and marks fields live
(the htmx round trip to /e/<entity>/form-rules), and the saved record obeys the same rules."""
from __future__ import annotations

import pytest

from browser_support import launch_chromium, live_server, screenshot
from computed_support import shop_documents
from conftest import ADMIN_PASSWORD, ADMIN_USER
from core_support import publish
from crmkit.runtime.actor import SYSTEM

pytestmark = pytest.mark.browser


@pytest.fixture
def shop(make_app):
    from playwright.sync_api import sync_playwright

    app = make_app("base")
    services = app.extensions["crmkit"]
    publish(services, shop_documents())
    with live_server(app) as url, sync_playwright() as p:
        browser = launch_chromium(p)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(url + "/login/")
        page.fill("input[name=username]", ADMIN_USER)
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("[type=submit]")
        page.wait_for_url(lambda u: "/login" not in u)
        yield page, url, services
        context.close()
        browser.close()


def test_fields_appear_and_become_required_as_values_change(shop):
    page, url, services = shop
    page.goto(url + "/e/shop.order/new")
    coupon, reason = page.locator("#field-coupon"), page.locator("#field-reason")
    assert coupon.is_hidden() and reason.is_visible()
    assert reason.locator(".required").count() == 0
    page.select_option("#f-status", "open")
    coupon.wait_for(state="visible")
    assert coupon.locator(".required").count() == 1
    page.fill("#f-amount", "5000")
    page.locator("#f-title").click()  # leaving the input fires "change"
    reason.locator(".required").wait_for()
    screenshot(page, "rules-form-live")
    page.fill("#f-title", "Browser order")
    page.fill("#f-coupon", "SPRING")
    page.click(".form-actions button[type=submit]")
    page.locator("#field-reason .error").wait_for()  # required while amount > 1000
    assert page.input_value("#f-coupon") == "SPRING"  # kept through the live swaps and the 422 re-render
    page.fill("#f-reason", "bulk buy")
    page.click(".form-actions button[type=submit]")
    page.wait_for_url(lambda u: "/edit" not in u and "/new" not in u)
    rows = services.queries.list("shop.order", SYSTEM).rows
    assert [(r["title"], r["coupon"], r["reason"]) for r in rows] == [("Browser order", "SPRING", "bulk buy")]
    page.goto(url + f"/e/shop.order/{rows[0]['id']}/edit")
    page.select_option("#f-status", "paid")
    page.locator("#field-coupon").wait_for(state="hidden")
