"""Dashboards and reports in a real browser: charts are drawn, and clicking a bar drills down."""
from __future__ import annotations

import re

import pytest

from crmkit.apps.membership.demo import seed_demo
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.packages import SeedContext

from browser_support import launch_chromium, live_server, log_in, screenshot
from conftest import ADMIN_PASSWORD, ADMIN_USER

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(databases, tmp_path_factory):
    """One seeded app, server and browser for the module (seeding 80 members and starting Chromium cost ~10 s a test);
    each test writes only what it alone asserts on (its own report, watch, dashboard)."""
    from playwright.sync_api import sync_playwright

    from conftest import make_settings
    from crmkit.runtime.web.app import create_app

    app = create_app(make_settings(databases.fresh("membership"), tmp_path_factory.mktemp("report-browser")), testing=True)
    services = app.extensions["crmkit"]
    seed_demo(SeedContext(records=services.records, queries=services.queries, catalog=services.store.catalog(), actor=SYSTEM, size=80))
    with live_server(app) as url, sync_playwright() as p:
        browser = launch_chromium(p)
        yield url, browser
        browser.close()
    with app.app_context():
        app.extensions["sqlalchemy"].session.remove()
        services.engine.dispose()


@pytest.fixture
def site(server):
    """A fresh browser context (cookies, so the language too) signed in as the admin."""
    url, browser = server
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(15_000)
    log_in(page, url, ADMIN_USER, ADMIN_PASSWORD)
    yield url, page
    context.close()


def drawn_canvases(page) -> list[dict]:
    return page.evaluate("""() => Array.from(document.querySelectorAll('[data-chart] canvas')).map(c => {
        const r = c.getBoundingClientRect();
        const ctx = c.getContext('2d');
        const px = ctx.getImageData(0, 0, c.width, c.height).data;
        let ink = 0;
        for (let i = 3; i < px.length; i += 4 * 97) { if (px[i] > 0) ink++; }
        return {w: r.width, h: r.height, ink: ink};
    })""")


def test_dashboard_draws_every_chart(site):
    base, page = site
    page.goto(base + "/dashboards/membership.overview/")
    page.wait_for_selector("[data-chart][data-drawn] canvas")
    page.wait_for_timeout(600)  # let the entry animation finish before the screenshot
    canvases = drawn_canvases(page)
    assert len(canvases) >= 4  # funnel, donut, line, stacked bar (the KPI is a number card)
    assert all(c["w"] > 100 and c["h"] > 100 and c["ink"] > 0 for c in canvases)
    kpi = page.locator(".kpi-value").first.inner_text()
    assert re.fullmatch(r"[\d,]+", kpi.strip())
    import json
    from pathlib import Path

    import crmkit.apps.membership as membership_app

    shipped = json.loads((Path(membership_app.__path__[0]) / "dashboards" / "overview.json").read_text("utf-8"))
    assert page.locator(".dash-widget").count() == len(shipped["widgets"]) > 1
    screenshot(page, "dashboard-overview")


def test_clicking_a_bar_drills_down_and_breadcrumbs_go_back(site):
    base, page = site
    page.goto(base + "/reports/membership.members_by_level/")
    page.wait_for_selector("[data-chart][data-drawn] canvas")
    screenshot(page, "report-members-by-level")
    first_label = page.locator(".report-table tbody tr td a.drill-link").first.inner_text()
    point = page.evaluate("""() => {
        const el = document.querySelector('[data-chart]');
        const chart = echarts.getInstanceByDom(el);
        const bar = chart.getModel().getSeriesByIndex(0).getData().getItemLayout(0);  // the first bar's rectangle
        const r = el.getBoundingClientRect();
        return {x: r.left + bar.x + bar.width / 2, y: r.top + bar.y + bar.height / 2};
    }""")
    page.mouse.click(point["x"], point["y"])
    page.wait_for_url(re.compile(r"d="))
    page.wait_for_selector(".report-crumbs a")
    assert first_label in page.locator(".report-crumbs").inner_text()
    screenshot(page, "report-drill-level-2")
    # The last level opens the member list with the matching filter.
    page.locator(".report-table tbody tr td a.drill-link").first.click()
    page.wait_for_url(re.compile(r"/e/membership\.member/\?"))
    assert "ff=level" in page.url
    screenshot(page, "report-drill-records")
    page.go_back()
    page.wait_for_selector(".report-crumbs a")
    page.locator(".report-crumbs a").first.click()
    page.wait_for_selector(".report-crumbs a", state="detached")  # back at the top level (htmx swapped the region)
    page.wait_for_selector("[data-chart][data-drawn] canvas")
    assert "d=" not in page.url


def test_pivot_and_kpi_pages(site):
    base, page = site
    page.goto(base + "/reports/membership.level_gender_pivot/")
    page.wait_for_selector(".report-table tfoot")
    screenshot(page, "report-pivot")
    page.goto(base + "/reports/membership.new_members_kpi/?p_joined=this_year")
    page.wait_for_selector(".kpi-value")
    assert page.locator(".kpi-compare").count() == 1
    screenshot(page, "report-kpi")


def test_designer_live_preview_and_workbench(site):
    base, page = site
    page.goto(base + "/builder/reports/new?source=membership.member")
    page.wait_for_selector("#preview [data-chart][data-drawn] canvas")
    page.select_option("select[name=g0]", "joined_on")
    page.select_option("select[name=g0b]", "quarter")
    page.select_option("select[name=chart]", "line")
    page.wait_for_function("() => document.querySelector('#preview') && /季度/.test(document.querySelector('#preview').innerText)")
    page.wait_for_selector("#preview [data-chart][data-drawn] canvas")
    screenshot(page, "report-designer")
    page.click("#designer-form button[type=submit]")
    page.wait_for_url(re.compile(r"/reports/membership\.u\d+_[0-9a-f]+/"))
    page.click("form.star-form button")
    page.wait_for_selector("form.star-form button[aria-pressed=true]")
    page.goto(base + "/e/membership.member/")
    page.locator("#list-region tbody tr a").first.click()
    page.wait_for_selector("[data-watch]")
    page.click("[data-watch]")
    page.wait_for_selector("[data-watch][aria-pressed=true]")
    page.goto(base + "/home")
    favorites = page.locator("[data-section=favorites]").inner_text()
    assert "统计" in favorites  # the report just saved and starred
    assert page.locator("[data-section=watched] li").count() == 1
    screenshot(page, "workbench")


def test_dashboard_in_english(site):
    base, page = site
    page.goto(base + "/locale/en")
    page.goto(base + "/dashboards/membership.overview/")
    page.wait_for_selector("[data-chart][data-drawn] canvas")
    assert "Membership overview" in page.locator("h1").inner_text()
    page.wait_for_timeout(600)
    screenshot(page, "dashboard-overview-en")


def test_design_a_dashboard_with_two_widgets_and_open_it(site):
    base, page = site
    page.goto(base + "/reports/")
    page.click("[data-new-dashboard]")
    page.wait_for_url(re.compile(r"/builder/dashboards/new$"))
    page.fill("input[name=label_zh]", "设计的看板")
    page.fill("input[name=label_en]", "Designed board")
    page.select_option("select[name=w0_report]", "membership.members_by_level")
    page.fill("input[name=w0_width]", "7")
    page.select_option("select[name=w1_report]", "membership.member_gender")
    page.fill("input[name=w1_width]", "5")
    page.select_option("select[name=w1_height]", "large")
    page.wait_for_function("() => document.querySelectorAll('#dash-preview [data-chart][data-drawn] canvas').length === 2")
    screenshot(page, "dashboard-designer")
    page.click("#dash-form button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboards/membership\.d_[0-9a-f]+/$"))
    page.wait_for_function("() => document.querySelectorAll('[data-chart][data-drawn] canvas').length === 2")
    page.wait_for_timeout(600)
    canvases = drawn_canvases(page)
    assert len(canvases) == 2 and all(c["w"] > 100 and c["h"] > 100 and c["ink"] > 0 for c in canvases)
    assert "设计的看板" in page.locator("h1").inner_text()
    assert page.locator(".dash-widget").count() == 2
    assert "设计的看板" in page.locator("nav, aside").first.inner_text()  # the new dashboard is in the menu
    screenshot(page, "dashboard-designed")
