"""The link picker in a real browser: typing in its search box narrows the choices and keeps the chosen one.

The order form's member picker shows the first 50 members; a clerk finds any other member by typing.
"""
from __future__ import annotations

import re

import pytest

from crmkit.apps.membership.demo import seed_demo
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.packages import SeedContext

from browser_support import launch_chromium, live_server, log_in, screenshot
from conftest import ADMIN_PASSWORD, ADMIN_USER

pytestmark = pytest.mark.browser
OPTIONS = "() => Array.from(document.querySelectorAll('select[name=member] option')).map(o => o.value + '|' + o.textContent.trim())"


def test_search_narrows_the_member_choices_and_the_choice_is_saved(app):
    from playwright.sync_api import sync_playwright

    services = app.extensions["crmkit"]
    seed_demo(SeedContext(records=services.records, queries=services.queries, catalog=services.store.catalog(), actor=SYSTEM, size=80))
    members = services.queries.list("membership.member", SYSTEM, fields=["id", "name", "card_no"], limit=200).rows
    with live_server(app) as base, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN").new_page()
        page.set_default_timeout(10_000)
        log_in(page, base, ADMIN_USER, ADMIN_PASSWORD)

        page.goto(base + "/e/membership.order/new")
        before = page.evaluate(OPTIONS)
        assert len(before) == 51  # "choose" + the first 50
        shown = {o.split("|")[0] for o in before}
        wanted = next(m for m in members if str(m["id"]) not in shown)  # a member the clerk can only reach by searching
        search = page.locator(".link-picker:has(select[name=member]) input.link-search")
        search.fill(wanted["card_no"])
        page.wait_for_function(f"() => ({OPTIONS[6:]}).length === 2")
        assert page.evaluate(OPTIONS)[1] == f"{wanted['id']}|{wanted['name']}"
        page.select_option("select[name=member]", str(wanted["id"]))
        screenshot(page, "link-picker-search-zh")

        search.fill("")  # the first 50 again, and the chosen member on top of them
        page.wait_for_function(f"() => ({OPTIONS[6:]}).length === 52")
        assert page.evaluate(OPTIONS)[1] == f"{wanted['id']}|{wanted['name']}"
        search.fill("没有这样的会员-xyz")  # nothing matches: the chosen member stays choosable, nothing else
        page.wait_for_function(f"() => ({OPTIONS[6:]}).length === 2 && document.querySelector('select[name=member]').value === '{wanted['id']}'")
        assert page.evaluate(OPTIONS) == ["|请选择", f"{wanted['id']}|{wanted['name']}"]
        page.fill("input[name=amount]", "88")
        page.locator("form.record-form [type=submit], form [type=submit].btn-primary").first.click()
        page.wait_for_url(re.compile(r"/e/membership\.order/\d+$"))
        order_id = int(page.url.rsplit("/", 1)[1])
        assert services.queries.get("membership.order", order_id, SYSTEM)["member"] == wanted["id"]
        browser.close()
