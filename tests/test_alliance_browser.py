"""A counter redemption in a real browser: a merchant clerk verifies a member by mobile, redeems a points offer
and sees the balance and the redemption list change."""
from __future__ import annotations

import pytest

from alliance_support import earn, make_member, make_merchant, make_offer
from browser_support import launch_chromium, live_server, screenshot
from crmkit.apps.membership.ledger import LedgerService, check_invariants
from crmkit.runtime.actor import SYSTEM
from test_alliance_portal import PASSWORD, add_staff

pytestmark = pytest.mark.browser


def test_counter_redemption_in_the_portal(make_app):
    from playwright.sync_api import sync_playwright

    app = make_app("alliance")
    s = app.extensions["crmkit"]
    a = make_merchant(s, "CAFE", name="星巴克（南京西路店）")
    make_merchant(s, "CINEMA", name="万达影城")
    silver = s.records.create("membership.level", {"name": "金卡会员", "code": "GOLD", "level_value": 2}, SYSTEM)
    member = make_member(s, 8, silver)
    earn(s, member, 1200, "seed")
    make_offer(s, a, name="会员专享 9 折")
    offer = make_offer(s, a, name="500 积分兑换中杯拿铁", kind="points", points_cost=500, amount_off="32", funded_by="club", per_member_limit=2)
    add_staff(app, s, a, "cafe_clerk")
    with live_server(app) as base, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN").new_page()
        page.set_default_timeout(10_000)
        page.goto(base + "/login/")
        page.fill("input[name=username]", "cafe_clerk")
        page.fill("input[name=password]", PASSWORD)
        page.click("[type=submit]")
        page.goto(base + "/alliance/portal/")
        page.fill("#q", "13900000008")
        page.click("#verify")
        page.wait_for_selector("[data-member]")
        assert page.inner_text("[data-member-mobile]").strip() == "139****0008"
        assert page.inner_text("[data-balance]").strip() == "1200"
        page.select_option("#offer", str(offer))
        screenshot(page, "alliance-portal-verify")
        page.click("#redeem")
        page.wait_for_function("() => (document.querySelector('[data-balance]') || {innerText: ''}).innerText.trim() === '700'")
        assert "500 积分兑换中杯拿铁" in page.inner_text("[data-recent]")
        assert "核销成功" in page.content()
        screenshot(page, "alliance-portal-redeemed")
        browser.close()
    assert LedgerService(s.engine).balances(member)["reward"]["wallet"] == 700
    assert s.queries.get("alliance.offer", offer, SYSTEM)["used_count"] == 1
    with s.engine.connect() as c:
        assert check_invariants(c) == []
