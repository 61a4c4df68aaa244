"""Automations in a real browser: the entity page, simulate (htmx) and the manual button on a record.
Screenshots go to var/screenshots/."""
from __future__ import annotations

import re

import pytest

from crmkit.runtime.actor import SYSTEM

from automation_support import MEMBER, automation, member, save
from browser_support import launch_chromium, live_server, screenshot
from conftest import ADMIN_PASSWORD, ADMIN_USER

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


def test_automations_page_simulate_and_manual_button(browser, app, services):
    save(services, automation("flag_vip", {"type": "manual"}, [{"set": {"tags": ["vip"]}}], label={"zh": "标记为 VIP", "en": "Mark VIP"},
                              description={"zh": "手动把会员标记为 VIP。", "en": "Mark the member as VIP by hand."}))
    rid = services.records.create(MEMBER, member(birthday="1990-11-20"), SYSTEM)
    services.records.create(MEMBER, member(name="陈静", mobile="13800000005", birthday="1988-11-02"), SYSTEM)
    services.background.outbox.dispatch()
    with live_server(app) as base:
        context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(base + "/login/")
        page.fill("input[name=username]", ADMIN_USER)
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("[type=submit]")
        page.wait_for_url(re.compile(r"/home$"))

        page.goto(f"{base}/automations/{MEMBER}")
        assert page.locator("#automation-birthday_greeting").inner_text().count("生日月祝福") == 1
        page.locator("#automation-birthday_greeting a:has-text('模拟')").click()
        page.wait_for_selector("#simulate-card")
        page.fill("#simulate-card input[name=at]", "2026-11-03")
        page.locator("#simulate-card button[type=submit]").click()
        page.wait_for_selector("#simulate-card li:has-text('陈静')")
        assert page.locator("#simulate-card li").count() == 2
        screenshot(page, "automations-page")

        page.goto(f"{base}/e/{MEMBER}/{rid}")
        page.wait_for_selector("#automation-panel button:has-text('标记为 VIP')").click()
        page.wait_for_url(re.compile(rf"/e/{re.escape(MEMBER)}/{rid}$"))
        assert services.queries.get(MEMBER, rid, SYSTEM)["tags"] == ["vip"]
        page.goto(f"{base}/automations/{MEMBER}?log=flag_vip")
        page.wait_for_selector("#run-log .badge:has-text('成功')")
        screenshot(page, "automations-run-log")

        # the designer: a bad condition is refused with its pointer and position, nothing saved
        page.goto(f"{base}/builder/automations/{MEMBER}/flag_vip")
        source = page.locator("textarea[name=definition]").input_value()
        page.fill("textarea[name=definition]", source.replace('"type": "manual"', '"type": "updated", "fields": ["nope"]'))
        page.click("form.card [type=submit]")
        page.wait_for_selector("#problems:has-text('/trigger/fields/0')")
        screenshot(page, "automations-designer-problems")
        assert services.store.catalog().automations[f"{MEMBER}:flag_vip"].trigger.type == "manual"
        context.close()
