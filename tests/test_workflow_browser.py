"""The join-application journey in a real browser: submit an application, review it, send it for approval,
approve it from "My approvals", and find the new member. Screenshots go to var/screenshots/."""
from __future__ import annotations

import re

import pytest

from browser_support import launch_chromium, live_server, screenshot
from conftest import ADMIN_PASSWORD, ADMIN_USER
from org_support import add_role
from workflow_support import APP_PERMS, MEMBER_READ

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
    """The admin also holds the membership manager role, so the approval lands in their inbox."""
    add_role(app, "Membership Manager", APP_PERMS + MEMBER_READ)
    with app.app_context():
        sm = app.appbuilder.sm
        admin = sm.find_user(username=ADMIN_USER)
        admin.roles.append(sm.find_role("Membership Manager"))
        sm.update_user(admin)
        app.extensions["sqlalchemy"].session.remove()
    with live_server(app) as url:
        yield url, app.extensions["crmkit"]


@pytest.fixture
def page(browser, served):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


def test_submit_review_approve_from_my_approvals_and_see_the_member(page, served):
    base, services = served
    page.goto(base + "/login/")
    page.fill("input[name=username]", ADMIN_USER)
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("[type=submit]")
    page.wait_for_url(re.compile(r"/home$"))

    # Submit an application at the front desk.
    page.goto(base + "/e/membership.application/new")
    page.fill("input[name=name]", "周浏览")
    page.fill("input[name=mobile]", "13700137001")
    page.click("#record-form [type=submit]")
    page.wait_for_url(re.compile(r"/e/membership\.application/\d+$"))
    panel = page.locator(".wf-panel")
    panel.wait_for()
    assert panel.locator(".wf-step.current").inner_text().strip() == "已提交"
    screenshot(page, "workflow-application-submitted")

    # Start the review (a dialog asks for an optional comment).
    panel.locator("button[data-transition=start_review]").click()
    dialog = page.locator("#wf-dialog-start_review")
    dialog.locator("textarea[name=comment]").fill("资料齐全，开始审核")
    dialog.locator("[type=submit]").click()
    page.wait_for_selector(".wf-step.current:has-text('审核中')")

    # Reject needs a reason: submitting without one keeps the dialog open with the error.
    page.locator("button[data-transition=reject]").click()
    reject = page.locator("#wf-dialog-reject")
    reject.locator("textarea[name=v_rejection_reason]").evaluate("el => el.removeAttribute('required')")
    reject.locator("[type=submit]").click()
    page.wait_for_selector("#wf-dialog-reject .field.has-error")
    screenshot(page, "workflow-reject-needs-reason")
    page.locator("#wf-dialog-reject [data-modal-close]").click()

    # Send it for approval.
    page.locator("button[data-transition=approve]").click()
    page.locator("#wf-dialog-approve textarea[name=comment]").fill("建议通过")
    page.locator("#wf-dialog-approve [type=submit]").click()
    page.wait_for_selector(".wf-pending")
    screenshot(page, "workflow-waiting-for-approval")

    # The nav shows one approval waiting; approve it from "My approvals".
    nav = page.locator(".nav-work .nav-link", has_text="我的审批")
    assert nav.locator(".count-pill").inner_text().strip() == "1"
    nav.click()
    page.wait_for_url(re.compile(r"/workflow/approvals$"))
    item = page.locator(".wf-item", has_text="周浏览")
    assert "建议通过" in item.inner_text()
    screenshot(page, "workflow-my-approvals")
    item.locator("textarea[name=comment]").fill("同意入会")
    item.locator("button[value=approve]").click()
    page.wait_for_selector(".alert-success")
    assert page.locator(".wf-item", has_text="周浏览").count() == 0

    # The member exists, with a card number from the member's sequence.
    page.goto(base + "/e/membership.member/?q=13700137001")
    row = page.locator("#list-region tbody tr", has_text="周浏览")
    row.wait_for()
    assert re.search(r"VIP\d{8}", row.inner_text())
    screenshot(page, "workflow-member-created")
    page.goto(base + "/workflow/tasks")
    screenshot(page, "workflow-my-tasks")
    page.goto(base + "/builder/workflows/membership.application")
    page.wait_for_selector(".wf-diagram svg")
    screenshot(page, "workflow-designer")
