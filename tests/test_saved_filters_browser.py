"""A saved filter in a real browser: filter the member list (by gender), save the filter, clear it, apply it again from the menu."""
from __future__ import annotations

import re

import pytest

from crmkit.apps.membership.demo import seed_demo
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.packages import SeedContext

from browser_support import launch_chromium, live_server, log_in, screenshot
from conftest import ADMIN_PASSWORD, ADMIN_USER

pytestmark = pytest.mark.browser
MEMBERS = "/e/membership.member/"
ROWS = "() => document.querySelectorAll('#list-region tbody input.row-check').length"


def test_save_a_filter_and_apply_it_again(app):
    from playwright.sync_api import sync_playwright

    services = app.extensions["crmkit"]
    seed_demo(SeedContext(records=services.records, queries=services.queries, catalog=services.store.catalog(), actor=SYSTEM, size=40))
    genders = [r["gender"] for r in services.queries.list("membership.member", SYSTEM, fields=["gender"], limit=200).rows]
    value = min((s for s in set(genders) if s), key=genders.count)  # the rarest: fewer than a page, more than none
    chosen = services.queries.list("membership.member", SYSTEM, filter={"field": "gender", "op": "eq", "value": value}, limit=50, count="exact")
    assert 0 < chosen.total < 25
    with live_server(app) as base, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN").new_page()
        page.set_default_timeout(10_000)
        log_in(page, base, ADMIN_USER, ADMIN_PASSWORD)

        page.goto(base + MEMBERS + f"?ff=gender&fo=eq&fv={value}")
        page.locator("#save-filter summary").click()
        page.fill("#save-filter input[name=name]", "按性别跟进")
        screenshot(page, "saved-filter-save-zh")
        page.locator("#save-filter button[type=submit]").click()
        page.wait_for_url(re.compile(r"saved=sf-\d+"))
        (saved,) = services.saved_filters.visible(_admin(), "membership.member")
        assert saved.name == "按性别跟进" and saved.filter == {"and": [{"field": "gender", "op": "eq", "value": value}]}
        assert page.locator(".alert-success").inner_text().strip().startswith("已保存筛选")
        page.wait_for_function(f"() => ({ROWS[6:]}) === {chosen.total}")

        page.goto(base + MEMBERS)  # everything again
        page.wait_for_function(f"() => ({ROWS[6:]}) === 25")
        page.locator("select.saved-filter").select_option(saved.key)  # htmx swaps the table region
        page.wait_for_url(re.compile(f"saved={saved.key}"))
        page.wait_for_function(f"() => ({ROWS[6:]}) === {chosen.total}")
        shown = page.locator("#list-region tbody tr:has(input.row-check) td:nth-child(2)").all_inner_texts()
        assert sorted(t.strip() for t in shown) == sorted(r["card_no"] for r in chosen.rows)
        screenshot(page, "saved-filter-applied-zh")
        browser.close()


def _admin():
    from crmkit.runtime.actor import Actor

    return Actor(id=1, username=ADMIN_USER, is_admin=True)
