"""The online joining journey in a real browser: a visitor joins through the public form (no login), staff review
and approve the application, the new member has a card, and the front desk reports the card lost from the member
page. Screenshots go to var/screenshots/."""
from __future__ import annotations

import re

import pytest

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


@pytest.fixture
def served(app):
    """The admin also holds the template's Membership Manager role (created at install), so approvals reach them."""
    with app.app_context():
        sm = app.appbuilder.sm
        admin = sm.find_user(username=ADMIN_USER)
        admin.roles.append(sm.find_role("Membership Manager"))
        sm.update_user(admin)
        app.extensions["sqlalchemy"].session.remove()
    with live_server(app) as url:
        yield url, app.extensions["crmkit"]


def test_join_online_review_approve_and_manage_the_card(browser, served):
    base, services = served
    visitor = browser.new_context(viewport={"width": 900, "height": 1000}, locale="zh-CN")
    page = visitor.new_page()
    page.set_default_timeout(15_000)
    page.goto(base + "/join")
    page.fill("#join-name", "林晓雨")
    page.fill("#join-mobile", "13611112222")
    page.fill("#join-id", "110101199001011237")
    a, b = map(int, re.match(r"(\d+) \+ (\d+)", page.inner_text("#join-question")).groups())
    screenshot(page, "membership-join-form")
    page.fill("#join-challenge", str(a + b + 1))  # a wrong answer first: the form comes back with the error
    page.check("input[name=consent]")
    page.click(".join-submit")
    page.wait_for_selector(".field.has-error #join-challenge")
    assert page.input_value("#join-name") == "林晓雨"
    a, b = map(int, re.match(r"(\d+) \+ (\d+)", page.inner_text("#join-question")).groups())
    page.fill("#join-challenge", str(a + b))
    page.check("input[name=consent]")
    page.click(".join-submit")
    page.wait_for_selector("#join-thanks")
    assert "申请已提交" in page.inner_text("#join-thanks")
    screenshot(page, "membership-join-thanks")
    visitor.close()

    staff = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    page = staff.new_page()
    page.set_default_timeout(15_000)
    page.goto(base + "/login/")
    page.fill("input[name=username]", ADMIN_USER)
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("[type=submit]")
    page.wait_for_url(re.compile(r"/home$"))
    page.goto(base + "/e/membership.application/?q=13611112222")
    page.locator("#list-region tbody tr", has_text="林晓雨").locator("a").first.click()
    page.wait_for_url(re.compile(r"/e/membership\.application/\d+$"))
    panel = page.locator(".wf-panel")
    panel.wait_for()
    panel.locator("button[data-transition=start_review]").click()
    page.locator("#wf-dialog-start_review [type=submit]").click()
    page.wait_for_selector(".wf-step.current:has-text('审核中')")
    page.locator("button[data-transition=approve]").click()
    page.locator("#wf-dialog-approve [type=submit]").click()
    page.wait_for_selector(".wf-pending")
    page.goto(base + "/workflow/approvals")
    item = page.locator(".wf-item", has_text="林晓雨")
    item.locator("button[value=approve]").click()
    page.wait_for_selector(".alert-success")

    page.goto(base + "/e/membership.member/?q=13611112222")
    row = page.locator("#list-region tbody tr", has_text="林晓雨")
    row.wait_for()
    assert re.search(r"VIP\d{8}", row.inner_text())
    row.locator("a").first.click()
    page.wait_for_url(re.compile(r"/e/membership\.member/\d+$"))
    card = page.locator("#card-panel")
    card.wait_for()
    assert re.fullmatch(r"VIP\d{8}", card.locator("[data-card-no]").inner_text().strip())
    assert "发卡" in card.inner_text()  # the issued card in the card history
    card.locator("button[data-card-action=report_lost]").click()
    dialog = page.locator("#card-dialog-report_lost")
    dialog.locator("textarea[name=reason]").fill("顾客来电，钱包遗失")
    screenshot(page, "membership-card-report-lost-dialog")
    dialog.locator("[type=submit]").click()
    page.wait_for_selector("#card-panel [data-card-status=lost]")
    assert "顾客来电，钱包遗失" in page.locator("#card-panel").inner_text()
    assert page.locator("#card-panel button[data-card-action=unfreeze]").count() == 1
    page.locator("#card-panel").scroll_into_view_if_needed()
    screenshot(page, "membership-card-actions")

    # Card numbers: a batch for the pool (managers only).
    page.click("#card-panel a[href$='/membership/cards/pool']")
    page.fill("#batch-count", "50")
    page.check("input[name=check_digit]")
    page.click("form[action$='/pool/batch'] [type=submit]")
    page.wait_for_selector(".alert-success")
    assert page.inner_text("[data-pool=free]").strip() == "50"
    screenshot(page, "membership-card-pool")
    staff.close()
