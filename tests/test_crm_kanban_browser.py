"""Browser journey: dragging opportunity cards between stage columns runs the pipeline workflow. A move no
transition allows snaps back with the reason; a move to Lost asks for the lost reason in a dialog; an allowed move
stays, and the record's stage, probability and workflow history follow."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from browser_support import launch_chromium, live_server, screenshot
from conftest import ADMIN_PASSWORD, ADMIN_USER
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.installer import install
from crmkit.runtime.workflow.tables import workflow_history

pytestmark = pytest.mark.browser
OPP = "crm_sales.opportunity"


@pytest.fixture
def site(make_app):
    app = make_app("base")
    s = app.extensions["crmkit"]
    install(s, "crm_sales")
    from crmkit.runtime.web.permissions import sync_entity_permissions

    with app.app_context():
        sync_entity_permissions(app, s)
    with live_server(app) as url:
        yield url, s


@pytest.fixture
def page(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        pg = b.new_context(viewport={"width": 1920, "height": 1000}, locale="zh-CN").new_page()
        pg.set_default_timeout(10_000)
        yield pg
        b.close()


def drag(page, source: str, target: str) -> None:
    """Real mouse movements: the board's SortableJS runs in pointer (fallback) mode."""
    src = page.locator(source).bounding_box()
    x, y = src["x"] + 4, src["y"] + src["height"] / 2  # the card's padding: its links and move menu do not start a drag
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 16):
        dst = page.locator(target).bounding_box()
        tx, ty = dst["x"] + dst["width"] / 2, dst["y"] + dst["height"] / 2
        f = min(1.0, i / 10)
        page.mouse.move(x + (tx - x) * f, y + (ty - y) * f)
        page.wait_for_timeout(80)
    page.mouse.up()


def column_of(page, name: str) -> str:
    return page.locator(".kanban-card", has_text=name).locator("xpath=..").get_attribute("data-value")


def test_dragging_cards_between_stages_runs_the_workflow(page, site):
    base, s = site
    acc = s.records.create("crm.account", {"name": "拖拽测试科技有限公司"}, SYSTEM)
    oid = s.records.create(OPP, {"name": "拖拽商机", "account": acc}, SYSTEM)
    page.goto(base + "/login/")
    page.fill("input[name=username]", ADMIN_USER)
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("[type=submit]")
    page.wait_for_url(re.compile(r"/home$"))
    page.goto(base + f"/e/{OPP}/kanban?by=stage")
    card = '.kanban-card:has-text("拖拽商机")'

    # Refused: no step of the pipeline leads from prospecting straight to won. The card snaps back.
    drag(page, card, '.kanban-cards[data-value="won"]')
    page.wait_for_function("() => { const b = document.querySelector('.kanban-status'); return b && !b.hidden && b.classList.contains('error'); }")
    assert "不能从“初步接洽”移到“赢单”" in page.locator(".kanban-status").inner_text()
    assert column_of(page, "拖拽商机") == "prospecting"
    screenshot(page, "crm-kanban-refused")
    assert s.queries.get(OPP, oid, SYSTEM)["stage"] == "prospecting"

    # Allowed: prospecting → qualification runs 'qualify'.
    drag(page, card, '.kanban-cards[data-value="qualification"]')
    page.wait_for_function("() => { const b = document.querySelector('.kanban-status'); return b && b.classList.contains('ok'); }")
    assert column_of(page, "拖拽商机") == "qualification"
    counts = page.locator(".kanban-head .muted").all_inner_texts()
    assert counts[:2] == ["0", "1"]  # the column counts follow the move
    row = s.queries.get(OPP, oid, SYSTEM)
    assert (row["stage"], str(row["probability"])) == ("qualification", "20.00")

    # Lost asks for the reason in a dialog; cancelling snaps back, confirming moves the card.
    drag(page, card, '.kanban-cards[data-value="lost"]')
    page.wait_for_selector('dialog.kanban-dialog[data-value="lost"][open]')
    screenshot(page, "crm-kanban-lost-dialog")
    page.click('dialog.kanban-dialog[data-value="lost"] button[value=cancel]')
    page.wait_for_function("() => !document.querySelector('dialog.kanban-dialog[open]')")
    assert column_of(page, "拖拽商机") == "qualification"
    drag(page, card, '.kanban-cards[data-value="lost"]')
    page.wait_for_selector('dialog.kanban-dialog[data-value="lost"][open]')
    page.fill('dialog.kanban-dialog[data-value="lost"] textarea[name=v_lost_reason]', "客户选择了自研方案")
    page.click('dialog.kanban-dialog[data-value="lost"] button[value=ok]')
    page.wait_for_function("() => { const b = document.querySelector('.kanban-status'); return b && b.classList.contains('ok') && b.textContent.includes('输单'); }")
    assert column_of(page, "拖拽商机") == "lost"
    screenshot(page, "crm-kanban-moved")
    row = s.queries.get(OPP, oid, SYSTEM)
    assert (row["stage"], row["lost_reason"]) == ("lost", "客户选择了自研方案")
    h = workflow_history
    with s.engine.connect() as conn:
        moves = [(r.transition, r.to_state) for r in conn.execute(select(h).where(h.c.entity == OPP, h.c.record_id == oid,
                                                                                   h.c.event == "transitioned").order_by(h.c.id))]
    assert moves == [("qualify", "qualification"), ("lose", "lost")]
