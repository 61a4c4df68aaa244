"""Key journeys in a real browser (Debian's Chromium through Playwright) against a live server.

Each journey checks what the user sees and what the database holds afterwards, and leaves full-page
screenshots of the pages it visits in var/screenshots/.
"""
from __future__ import annotations

import re

import pytest

from crmkit.apps.membership.demo import seed_demo
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import RecordNotFound
from crmkit.runtime.packages import SeedContext

from browser_support import launch_chromium, live_server, screenshot
from conftest import ADMIN_PASSWORD, ADMIN_USER

pytestmark = pytest.mark.browser
MEMBERS = "/e/membership.member/"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture
def demo(app):
    services = app.extensions["crmkit"]
    seed_demo(SeedContext(records=services.records, queries=services.queries, catalog=services.store.catalog(), actor=SYSTEM, size=40))
    with live_server(app) as url:
        yield url, services


@pytest.fixture
def page(browser, demo):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    context.close()


def log_in(page, base, password=ADMIN_PASSWORD):
    page.goto(base + "/login/")
    page.fill("input[name=username]", ADMIN_USER)
    page.fill("input[name=password]", password)
    page.click("[type=submit]")


def member_names(page) -> list[str]:
    return [t.strip() for t in page.locator("#list-region tbody tr td:nth-child(3)").all_inner_texts()]


def test_login_rejects_a_wrong_password_then_lets_the_admin_in(page, demo):
    base, _ = demo
    page.goto(base + MEMBERS)
    assert "/login/" in page.url  # anonymous users are sent to log in
    screenshot(page, "login")
    log_in(page, base, password="wrong-password")
    page.wait_for_selector(".alert-error, .alert-danger, .alert")
    assert "/login/" in page.url
    assert page.locator("input[name=password]").is_visible()
    log_in(page, base)
    page.wait_for_url(re.compile(r"/home$"))
    assert page.get_by_role("link", name="会员").first.is_visible()
    screenshot(page, "home-zh")


def test_list_search_sort_filter_and_paging(page, demo):
    base, services = demo
    log_in(page, base)
    page.goto(base + MEMBERS)
    assert page.locator("#list-region tbody tr").count() == 25
    screenshot(page, "member-list-zh")

    # Search narrows the table without a full reload (htmx swaps the region).
    target = services.queries.list("membership.member", SYSTEM, limit=1, sort=["name"]).rows[0]["name"]
    page.fill("input[name=q]", target)
    page.wait_for_function("n => [...document.querySelectorAll('#list-region tbody tr')].length <= n", arg=5)
    names = member_names(page)
    assert names and all(target in n for n in names)

    # Sorting by the name header gives the same order as the query service.
    page.goto(base + MEMBERS)
    page.locator("#list-region thead a.sort", has_text="姓名").click()
    page.wait_for_url(re.compile(r"sort=name"))
    expected = [r["name"] for r in services.queries.list("membership.member", SYSTEM, limit=25, sort=["name"]).rows]
    page.wait_for_function("first => (document.querySelector('#list-region tbody tr td:nth-child(3)') || {innerText: ''}).innerText.trim() === first", arg=expected[0])
    assert member_names(page) == expected

    # Next page continues where the first ended, with no row twice.
    first_page = set(member_names(page))
    page.locator("a[rel=next]").first.click()
    page.wait_for_url(re.compile(r"cursor="))
    page.wait_for_function("() => document.querySelectorAll('a[rel=prev]').length > 0")
    second_page = member_names(page)
    assert len(second_page) == 15 and not first_page & set(second_page)

    # The filter builder: card status = reported lost shows exactly the lost cards.
    page.goto(base + MEMBERS)
    page.locator("details.filter-toggle summary").click()
    page.locator("#filter-rows select[name=ff]").first.select_option("status")
    page.wait_for_selector("#filter-rows select[name=fv] option[value=lost]", state="attached")
    page.locator("#filter-rows select[name=fo]").first.select_option("eq")
    page.wait_for_selector("#filter-rows select[name=fo] option[value=eq][selected]", state="attached")
    page.wait_for_selector("#filter-rows select[name=fv] option[value=lost]", state="attached")
    page.locator("#filter-rows select[name=fv]").first.select_option("lost")
    page.locator("#filter-builder button[type=submit]:not([name=add_row])").last.click()
    page.wait_for_url(re.compile(r"fv=lost"))
    lost = services.queries.list("membership.member", SYSTEM, filter={"field": "status", "op": "eq", "value": "lost"}, limit=50, count="exact")
    page.wait_for_function("n => document.querySelectorAll('#list-region tbody input.row-check').length === n", arg=lost.total)
    shown = page.locator("#list-region tbody tr:has(input.row-check) td:nth-child(2)").all_inner_texts()
    assert sorted(t.strip() for t in shown) == sorted(r["card_no"] for r in lost.rows)


def test_create_with_errors_then_fix_edit_and_see_the_timeline(page, demo):
    base, services = demo
    log_in(page, base)
    page.goto(base + MEMBERS + "new")
    page.fill("input[name=mobile]", "1380013")
    page.fill("input[name=email]", "wang@")
    page.click("#record-form [type=submit]")
    page.wait_for_selector("#record-form .has-error .error")
    body = page.inner_text("#record-form")
    assert "此项必填" in body
    assert "phone" in body.lower() or "手机" in body
    screenshot(page, "member-form-errors-zh")
    before = services.queries.list("membership.member", SYSTEM, count="exact", limit=1).total

    page.fill("input[name=name]", "浏览器测试")
    page.fill("input[name=mobile]", "13800138123")
    page.fill("input[name=email]", "browser@example.com")
    page.locator("#record-form [role=tab]", has_text="会籍与偏好").click()
    page.fill("input[name=joined_on]", "2026-11-01")
    page.click("#record-form [type=submit]")
    page.wait_for_url(re.compile(r"/e/membership\.member/\d+$"))
    record_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    stored = services.queries.get("membership.member", record_id, SYSTEM)
    assert stored["name"] == "浏览器测试" and stored["mobile"] == "13800138123"
    assert stored["card_no"].startswith("VIP")
    assert services.queries.list("membership.member", SYSTEM, count="exact", limit=1).total == before + 1

    page.goto(f"{base}{MEMBERS}{record_id}/edit")
    page.fill("input[name=name]", "浏览器测试改")
    page.click("#record-form [type=submit]")
    page.wait_for_url(re.compile(rf"/e/membership\.member/{record_id}$"))
    assert services.queries.get("membership.member", record_id, SYSTEM)["name"] == "浏览器测试改"
    timeline = page.inner_text("body")
    assert "浏览器测试" in timeline and "浏览器测试改" in timeline
    screenshot(page, "member-detail-zh")


def test_language_switch_and_recycle_bin(page, demo):
    base, services = demo
    log_in(page, base)
    page.goto(base + MEMBERS)
    page.get_by_role("link", name="English").click()
    page.wait_for_function("() => document.documentElement.lang === 'en'")
    assert page.locator("#list-region thead").inner_text().count("Name") >= 1
    assert "Members" in page.inner_text("h1")
    screenshot(page, "member-list-en")

    victim = services.queries.list("membership.member", SYSTEM, limit=1).rows[0]
    page.goto(f"{base}{MEMBERS}{victim['id']}/delete")
    page.locator("form [type=submit]").last.click()
    page.wait_for_url(re.compile(r"/e/membership\.member/"))
    with pytest.raises(RecordNotFound):
        services.queries.get("membership.member", victim["id"], SYSTEM)
    page.goto(base + MEMBERS + "bin")
    assert victim["name"] in page.inner_text("#list-region")
    screenshot(page, "member-recycle-bin-en")
    page.locator("#list-region tbody tr", has_text=victim["name"]).get_by_role("button").click()
    page.wait_for_load_state()
    assert services.queries.get("membership.member", victim["id"], SYSTEM)["name"] == victim["name"]
