"""The builder journey in a real browser: add two fields to Member, lay them out side by side in a new
"Preferences" section (drag and drop), preview, publish, and use the new field through the API."""
from __future__ import annotations

import json
import re

import pytest

from browser_support import launch_chromium, live_server, screenshot
from conftest import ADMIN_PASSWORD, ADMIN_USER

pytestmark = pytest.mark.browser
B = "/builder/e/membership.member"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture
def live(app):
    with live_server(app) as url:
        yield url, app.extensions["crmkit"]


@pytest.fixture
def page(browser, live):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    context.close()


def log_in(page, base):
    page.goto(base + "/login/")
    page.fill("input[name=username]", ADMIN_USER)
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("[type=submit]")
    page.wait_for_url(re.compile(r"/home$"))


def draft_form(services):
    from sqlalchemy import select

    from crmkit.runtime.storage import platform_tables as pt

    with services.engine.connect() as conn:
        docs = conn.execute(select(pt.builder_draft.c.documents).where(pt.builder_draft.c.entity_key == "membership.member")).scalar()
    return (docs or {}).get("forms", {}).get("default", {})


def section_fields(services, section_id):
    for s in draft_form(services).get("sections", []):
        if s["id"] == section_id:
            return [f if isinstance(f, str) else f["field"] for f in s["fields"]]
    return None


def drag(page, source: str, target: str) -> None:
    """Drag with real mouse movements (SortableJS runs in pointer mode, as on touch screens). Lists
    grow while the dragged item passes over them, so the target's position is measured at every step."""
    src = page.locator(source).bounding_box()
    x, y = src["x"] + src["width"] / 2, src["y"] + src["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 16):
        dst = page.locator(target).bounding_box()
        tx, ty = dst["x"] + dst["width"] * 0.75, dst["y"] + dst["height"] / 2
        f = min(1.0, i / 10)
        page.mouse.move(x + (tx - x) * f, y + (ty - y) * f)
        page.wait_for_timeout(80)  # SortableJS looks at the pointer's target every 50 ms in pointer mode
    page.mouse.up()


def test_member_preferences_journey(page, live):
    base, services = live
    log_in(page, base)
    page.click("a.nav-link[href='/builder/']")
    page.wait_for_url(re.compile(r"/builder/$"))
    screenshot(page, "builder-home-zh")
    page.click(f"a[href='{B}/']")
    page.wait_for_url(re.compile(r"/builder/e/membership.member/$"))

    # A single select with two coloured options.
    page.select_option("#new-type", "single_select")
    page.click("form.add-field button[type=submit]")
    page.wait_for_url(re.compile(r"fields/new\?type=single_select"))
    page.fill("#p-name", "preferred_store")
    page.fill("#p-label-zh", "常去门店")
    page.fill("#p-label-en", "Preferred store")
    rows = page.locator("#p-options-rows tr:not([data-template])")
    rows.nth(0).locator("input[name='p.options.value']").fill("sh")
    rows.nth(0).locator("input[name='p.options.zh']").fill("上海店")
    rows.nth(0).locator("input[name='p.options.en']").fill("Shanghai")
    page.click("[data-add-option='p-options-rows']")
    rows.nth(1).locator("input[name='p.options.value']").fill("bj")
    rows.nth(1).locator("input[name='p.options.zh']").fill("北京店")
    rows.nth(1).locator("input[name='p.options.en']").fill("Beijing")
    screenshot(page, "builder-field-editor-zh")
    page.click(".field-editor button[type=submit]")
    page.wait_for_url(re.compile(r"/builder/e/membership.member/$"))
    assert page.locator("tr[data-field=preferred_store]").is_visible()

    # A text field.
    page.select_option("#new-type", "text")
    page.click("form.add-field button[type=submit]")
    page.fill("#p-name", "wechat_id")
    page.fill("#p-label-zh", "微信号")
    page.fill("#p-label-en", "WeChat ID")
    page.fill("#p-max_length", "64")
    page.click(".field-editor button[type=submit]")
    page.wait_for_url(re.compile(r"/builder/e/membership.member/$"))
    screenshot(page, "builder-fields-zh")

    # A new two-column "Preferences" section on the membership tab; drag both fields into it.
    page.click(f"a[href='{B}/layout']")
    page.wait_for_selector("#layout-region")
    page.fill("#ns-id", "preferences")
    page.fill("#ns-zh", "偏好")
    page.fill("#ns-en", "Preferences")
    page.select_option("#ns-tab", "membership")
    page.click("#new-section-form button[type=submit]")
    page.wait_for_selector("[data-section-id=preferences]")
    target = "[data-section-id=preferences] ul.layout-fields"
    page.set_viewport_size({"width": 1440, "height": 2600})  # the whole layout on screen: drags use screen coordinates
    for name in ("preferred_store", "wechat_id"):
        revision = int(page.get_attribute("#layout-region", "data-revision"))
        drag(page, f".palette li[data-name={name}] .drag-handle", target)
        # Saved when the server's answer (the next draft revision) has replaced the region.
        try:
            page.wait_for_selector(f"#layout-region[data-revision='{revision + 1}'] [data-section-id=preferences] li[data-name={name}]")
        except Exception:
            print("DBG", revision, page.get_attribute("#layout-region", "data-revision"), section_fields(services, "preferences"),
                  page.evaluate("() => [...document.querySelectorAll('[data-section-id=preferences] li')].map(e => e.dataset.name)"))
            screenshot(page, "debug-drag")
            raise
    assert section_fields(services, "preferences") == ["preferred_store", "wechat_id"]
    # Keyboard-accessible buttons do the same as dragging: move the section up one place and back.
    page.locator("[data-section-id=preferences] .layout-section-head .move-buttons button[value=up]").click()
    page.wait_for_function("() => (document.querySelector('#layout-sections .layout-section:nth-last-child(2)') || {dataset: {}}).dataset.sectionId === 'preferences'")
    page.wait_for_selector("#form-preview [data-section=preferences]", state="attached")
    screenshot(page, "builder-layout-zh")
    page.set_viewport_size({"width": 1440, "height": 900})

    # Preview: the two fields side by side in a two-column grid.
    page.click(f"a[href='{B}/preview']")
    page.click(".form-preview a.tab[data-tab=membership]")
    grid = page.locator("#form-preview [data-section=preferences] .form-grid")
    assert "cols-2" in grid.get_attribute("class")
    boxes = [page.locator(f"#form-preview #f-{n}").bounding_box() for n in ("preferred_store", "wechat_id")]
    assert abs(boxes[0]["y"] - boxes[1]["y"]) < 5 and boxes[0]["x"] < boxes[1]["x"]
    screenshot(page, "builder-preview-zh")

    # Publish: the plan lists two new columns; publishing makes them live.
    page.click(f"a[href='{B}/publish']")
    page.wait_for_selector(".plan-steps")
    assert page.locator(".plan-step").count() == 2
    screenshot(page, "builder-publish-zh")
    page.click(".publish-form button[type=submit]")
    page.wait_for_url(re.compile(r"/versions$"))
    screenshot(page, "builder-versions-zh")

    # The API knows the new field at once (cookie-authenticated call with the CSRF header).
    result = page.evaluate("""async () => {
        const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken'];
        const r = await fetch('/api/v1/records/membership.member', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRFToken': token},
            body: JSON.stringify({name: '浏览器会员', mobile: '13800138999', joined_on: '2024-05-01', preferred_store: 'bj', wechat_id: 'wx_demo'})});
        return {status: r.status, body: await r.json()};
    }""")
    assert result["status"] == 201, json.dumps(result, ensure_ascii=False)
    got = page.evaluate("async id => (await fetch('/api/v1/records/membership.member/' + id)).json()", result["body"]["id"])
    assert got["preferred_store"] == "bj" and got["wechat_id"] == "wx_demo"
    # And the record form shows the section.
    page.goto(base + f"/e/membership.member/{got['id']}/edit?tab=membership")
    assert page.locator("#f-preferred_store").is_visible() and page.locator("#f-wechat_id").input_value() == "wx_demo"


def test_builder_pages_in_english(page, live):
    base, services = live
    log_in(page, base)
    page.goto(base + "/locale/en")
    page.goto(base + "/builder/")
    assert "Builder" in page.inner_text("h1")
    screenshot(page, "builder-home-en")
    page.goto(base + B + "/fields/new?type=single_select")
    assert page.locator("text=Options").first.is_visible()
    screenshot(page, "builder-field-editor-en")
    page.goto(base + B + "/layout")
    screenshot(page, "builder-layout-en")
    page.goto(base + B + "/list")
    assert page.locator("#column-list li").count() > 6
    screenshot(page, "builder-list-view-en")
    page.goto(base + B + "/publish")
    screenshot(page, "builder-publish-en")
    page.goto(base + B + "/fields/notes/delete")
    screenshot(page, "builder-delete-field-en")
    page.goto(base + "/builder/upgrades?app=membership")
    screenshot(page, "builder-upgrades-en")
    page.goto(base + "/builder/config")
    screenshot(page, "builder-config-en")
    # The kanban and calendar runtime views.
    import datetime as dt

    from crmkit.runtime.actor import SYSTEM

    today = dt.date.today()
    for i, (name, status) in enumerate((("Wang Fang", "active"), ("Li Lei", "active"), ("Zhao Min", "lost"), ("Chen Jie", "cancelled"))):
        services.records.create("membership.member", {"name": name, "mobile": f"1380000{i:04d}", "joined_on": today.replace(day=1 + i * 3).isoformat(),
                                                      "status": status}, SYSTEM)
    page.goto(base + "/e/membership.member/kanban?by=status")
    assert page.locator(".kanban-column").count() == 3 and page.locator(".kanban-card").count() == 4
    screenshot(page, "kanban-en")
    page.goto(base + "/e/membership.member/calendar?by=joined_on")
    assert page.locator(".cal-item").count() == 4
    screenshot(page, "calendar-en")
