"""Points on the web: the panel on a member's page, and the staff desk (adjust, approve, redeem) with CSRF and policy."""
from __future__ import annotations

import re

from crmkit.apps.membership.ledger import LedgerService
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.permissions.admin import PermissionAdmin

from conftest import csrf_from, login
from ledger_support import entry_count, make_member

DESK = "/membership/points/member/{}"


def setup_member(services, points=500):
    m = make_member(services)
    LedgerService(services.engine).earn(m, points, key=f"web:seed:{m}", actor=SYSTEM, source_type="order", source_id=42)
    return m


def add_user(app, username, role_name, actions):
    services = app.extensions["crmkit"]
    with app.app_context():
        sm = app.appbuilder.sm
        role = sm.find_role(role_name) or sm.add_role(role_name)
        role_id = role.id
        user = sm.add_user(username, username, "Tester", f"{username}@example.com", role, "staff-pass-2024")
        assert user
        app.extensions["sqlalchemy"].session.remove()
    if actions is not None:
        PermissionAdmin(services.engine, services.policy.rules, services.store.catalog).set_actions(
            role_id, services.store.catalog().entity("membership.member"), actions, actor_id=None)
    c = app.test_client()
    login(c, username, "staff-pass-2024")
    return c


def test_member_page_loads_the_points_panel(client, services):
    m = setup_member(services)
    page = client.get(f"/e/membership.member/{m}").get_data(as_text=True)
    assert f"/membership/points/member/{m}/panel" in page
    panel = client.get(f"/membership/points/member/{m}/panel", headers={"HX-Request": "true"})
    html = panel.get_data(as_text=True)
    assert panel.status_code == 200
    assert re.search(r'data-balance="reward">500<', html) and "消费单 #42" in html


def test_panel_in_chinese_and_english(client, services):
    m = setup_member(services)
    zh = client.get(f"/membership/points/member/{m}/panel").get_data(as_text=True)
    assert "奖励积分" in zh and "获得" in zh
    client.get("/locale/en")
    en = client.get(f"/membership/points/member/{m}/panel").get_data(as_text=True)
    assert "Reward points" in en and "Earned" in en and "奖励积分" not in en


def test_adjust_from_the_desk_posts_once_with_csrf(client, services):
    m = setup_member(services)
    page = client.get(DESK.format(m)).get_data(as_text=True)
    token = csrf_from(page)
    resp = client.post(DESK.format(m) + "/adjust", data={"csrf_token": token, "points": "-120", "reason": "退货补扣", "currency": "reward"})
    assert resp.status_code == 302
    assert LedgerService(services.engine).balances(m)["reward"]["wallet"] == 380
    follow = client.get(DESK.format(m)).get_data(as_text=True)
    assert "退货补扣" in follow and 'data-balance="reward">380<' in follow


def test_adjust_without_csrf_is_refused_and_nothing_stored(client, services):
    m = setup_member(services)
    resp = client.post(DESK.format(m) + "/adjust", data={"points": "100", "reason": "x"})
    assert resp.status_code == 400
    assert entry_count(services, kind="adjust") == 0


def test_bad_adjust_input_shows_errors_and_stores_nothing(client, services):
    m = setup_member(services)
    token = csrf_from(client.get(DESK.format(m)).get_data(as_text=True))
    resp = client.post(DESK.format(m) + "/adjust", data={"csrf_token": token, "points": "abc", "reason": ""})
    assert resp.status_code == 422 and "请输入整数" in resp.get_data(as_text=True)
    resp = client.post(DESK.format(m) + "/adjust", data={"csrf_token": token, "points": "-600", "reason": "too much"})
    assert resp.status_code == 409 and "积分不足" in resp.get_data(as_text=True)
    assert LedgerService(services.engine).balances(m)["reward"]["wallet"] == 500
    assert entry_count(services, kind="adjust") == 0


def test_large_adjustment_needs_a_second_user(app, client, services):
    m = setup_member(services)
    token = csrf_from(client.get(DESK.format(m)).get_data(as_text=True))
    client.post(DESK.format(m) + "/adjust", data={"csrf_token": token, "points": "5000", "reason": "年度补偿"})
    assert LedgerService(services.engine).balances(m)["reward"]["wallet"] == 500
    page = client.get(DESK.format(m)).get_data(as_text=True)
    assert "年度补偿" in page and "approve" not in re.findall(r'/adjustments/\d+/(\w+)', page)  # the requester sees no approve button
    adj_id = int(re.search(r"<tr><td>(\d+)</td><td class=\"num\">5000", page).group(1))
    resp = client.post(f"/membership/points/adjustments/{adj_id}/approve", data={"csrf_token": token, "member": m})
    assert resp.status_code == 409 and LedgerService(services.engine).balances(m)["reward"]["wallet"] == 500
    other = add_user(app, "approver", "Admin", None)
    token2 = csrf_from(other.get(DESK.format(m)).get_data(as_text=True))
    resp = other.post(f"/membership/points/adjustments/{adj_id}/approve", data={"csrf_token": token2, "member": m})
    assert resp.status_code == 302
    assert LedgerService(services.engine).balances(m)["reward"]["wallet"] == 5500


def test_redeem_from_the_desk_and_a_resubmitted_form_posts_once(client, services):
    m = setup_member(services)
    item = services.records.create("membership.reward_item", {"name": "帆布包", "code": "BAG", "kind": "goods", "points": 200, "stock": 3}, SYSTEM)
    page = client.get(DESK.format(m)).get_data(as_text=True)
    token = csrf_from(page)
    key = re.search(r'name="request_key" value="([0-9a-f]+)"', page).group(1)
    data = {"csrf_token": token, "request_key": key, "item": str(item), "quantity": "2"}
    assert client.post(DESK.format(m) + "/redeem", data=data).status_code == 302
    assert client.post(DESK.format(m) + "/redeem", data=data).status_code == 302  # double-click
    assert LedgerService(services.engine).balances(m)["reward"]["wallet"] == 100
    assert services.queries.get("membership.reward_item", item, SYSTEM)["stock"] == 1
    data["request_key"] = "other"
    resp = client.post(DESK.format(m) + "/redeem", data=data)
    assert resp.status_code == 409 and "积分不足" in resp.get_data(as_text=True)


def test_read_only_user_sees_points_but_cannot_post(app, services):
    m = setup_member(services)
    reader = add_user(app, "reader", "Points Reader", {"read"})
    html = reader.get(f"/membership/points/member/{m}/panel").get_data(as_text=True)
    assert 'data-balance="reward">500<' in html and "/membership/points/member/%d\"" % m not in html
    page = reader.get(DESK.format(m))
    assert page.status_code == 200 and "/adjust" not in page.get_data(as_text=True)
    token = csrf_from(reader.get("/home").get_data(as_text=True))
    resp = reader.post(DESK.format(m) + "/adjust", data={"csrf_token": token, "points": "100", "reason": "x"})
    assert resp.status_code == 403
    assert entry_count(services, kind="adjust") == 0


def test_user_without_member_access_cannot_see_points(app, services):
    m = setup_member(services)
    nobody = add_user(app, "nobody", "No Members", set())
    assert nobody.get(f"/membership/points/member/{m}/panel").status_code in (403, 404)
