"""The merchant staff portal through the Flask test client: scoping to the staff's own merchant, masked member
data, CSRF, counter redemption and purchase, and the row scopes behind the generated pages and API."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from alliance_support import earn, make_member, make_merchant, make_offer, make_plan
from conftest import csrf_from, login
from crmkit.apps.alliance.staff import SHARED_ROLE, link_staff
from crmkit.apps.membership.ledger import LedgerService, check_invariants
from crmkit.runtime.actor import SYSTEM

PASSWORD = "portal-pass-123"


def add_staff(app, services, merchant: int, username: str) -> int:
    with app.app_context():
        sm = app.appbuilder.sm
        role = sm.find_role(SHARED_ROLE) or sm.add_role(SHARED_ROLE)
        uid = sm.add_user(username, username, "Staff", f"{username}@example.com", role, PASSWORD).id
        app.extensions["sqlalchemy"].session.remove()
    link_staff(services, merchant, uid, actor=SYSTEM)
    m = services.queries.get("alliance.merchant", merchant, SYSTEM)
    services.records.update("alliance.merchant", merchant, {"staff": [*({"id": s["id"], "user": s["user"]} for s in m.get("staff") or []),
                                                                      {"user": uid}]}, SYSTEM, expected_version=m["row_version"])
    return uid


@pytest.fixture
def world(make_app):
    app = make_app("alliance")
    s = app.extensions["crmkit"]
    make_plan(s)
    a, b = make_merchant(s, "A"), make_merchant(s, "B")
    member = make_member(s, 7)
    earn(s, member, 1000, "seed")
    card = s.queries.get("membership.member", member, SYSTEM)["card_no"]
    offers = {"a_disc": make_offer(s, a, name="A 店 9 折"), "a_pts": make_offer(s, a, name="A 店 300 积分换咖啡", kind="points", points_cost=300,
                                                                              amount_off="25", funded_by="club"),
              "b_disc": make_offer(s, b, name="B 店 8 折", discount_rate="20")}
    add_staff(app, s, a, "clerk_a")
    add_staff(app, s, b, "clerk_b")
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user("outsider", "Out", "Sider", "out@example.com", sm.find_role(SHARED_ROLE), PASSWORD)
        app.extensions["sqlalchemy"].session.remove()
    b_red = s.records.create("alliance.redemption", {"ref": "R-B-1", "merchant": b, "offer": offers["b_disc"], "member": member,
                                                     "redeemed_at": "2026-01-02T03:04:05+00:00", "benefit_amount": "9", "status": "done"}, SYSTEM)
    return {"app": app, "s": s, "a": a, "b": b, "member": member, "card": card, "mobile": "13900000007", "offers": offers, "b_red": b_red}


def client_for(app, username):
    c = app.test_client()
    login(c, username, PASSWORD)
    return c


def test_staff_verify_a_member_and_see_masked_data_only(world):
    c = client_for(world["app"], "clerk_a")
    page = c.get(f"/alliance/portal/?q={world['card']}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "商家A" in html and "商家B" not in html and "B 店 8 折" not in html and "A 店 9 折" in html
    full = world["s"].queries.get("membership.member", world["member"], SYSTEM)
    shown = re.sub(r'value="[^"]*"', "", html)  # the query the clerk typed is echoed in the form fields only
    assert full["name"] not in shown and full["mobile"] not in shown and world["card"] not in shown
    assert "139****0007" in html and full["name"][0] + "**" in html
    assert 'data-balance>1000<' in html
    by_mobile = c.get(f"/alliance/portal/?q={world['mobile']}").get_data(as_text=True)
    assert "139****0007" in by_mobile
    partial = c.get("/alliance/portal/?q=1390000").get_data(as_text=True)  # no partial matches: staff cannot browse members
    assert "data-not-found" in partial and "data-member" not in partial


def test_counter_redemption_needs_csrf_and_posts_to_the_ledger(world):
    c = client_for(world["app"], "clerk_a")
    html = c.get(f"/alliance/portal/?q={world['card']}").get_data(as_text=True)
    key = re.search(r'name="request_key" value="([0-9a-f]+)"', html).group(1)
    form = {"q": world["card"], "offer": str(world["offers"]["a_pts"]), "request_key": key}
    assert c.post("/alliance/portal/redeem", data=form).status_code == 400  # no CSRF token
    assert world["s"].queries.list("alliance.redemption", SYSTEM, count="exact").total == 1
    resp = c.post("/alliance/portal/redeem", data={**form, "csrf_token": csrf_from(html)})
    assert resp.status_code == 302
    again = c.post("/alliance/portal/redeem", data={**form, "csrf_token": csrf_from(html)})  # resubmitted form: nothing new
    assert again.status_code == 302
    rows = world["s"].queries.list("alliance.redemption", SYSTEM, filter={"field": "merchant", "op": "eq", "value": world["a"]}).rows
    assert len(rows) == 1 and rows[0]["points"] == 300 and rows[0]["created_by"] is not None
    assert LedgerService(world["s"].engine).balances(world["member"])["reward"]["wallet"] == 700
    page = c.get(resp.headers["Location"]).get_data(as_text=True)
    assert "核销成功" in page and "A 店 300 积分换咖啡" in page
    with world["s"].engine.connect() as conn:
        assert check_invariants(conn) == []


def test_merchant_a_cannot_redeem_merchant_b_offers_or_see_its_records(world):
    c = client_for(world["app"], "clerk_a")
    html = c.get(f"/alliance/portal/?q={world['card']}").get_data(as_text=True)
    key = re.search(r'name="request_key" value="([0-9a-f]+)"', html).group(1)
    resp = c.post("/alliance/portal/redeem", data={"q": world["card"], "offer": str(world["offers"]["b_disc"]), "bill": "100", "request_key": key,
                                                   "csrf_token": csrf_from(html)})
    assert resp.status_code == 409 and "该优惠不属于本商家" in resp.get_data(as_text=True)
    assert world["s"].queries.list("alliance.redemption", SYSTEM, count="exact").total == 1
    # the generated API applies the staff role's row scope
    headers = {"X-CSRFToken": csrf_from(html)}
    listed = c.get("/api/v1/records/alliance.redemption", headers=headers)
    assert listed.status_code == 200 and listed.get_json()["items"] == []
    assert c.get(f"/api/v1/records/alliance.redemption/{world['b_red']}").status_code == 404
    merchants = c.get("/api/v1/records/alliance.merchant").get_json()["items"]
    assert [m["code"] for m in merchants] == ["A"]
    assert c.get(f"/api/v1/records/membership.member/{world['member']}").status_code == 403  # no right on members at all
    b = client_for(world["app"], "clerk_b")
    assert [r["ref"] for r in b.get("/api/v1/records/alliance.redemption").get_json()["items"]] == ["R-B-1"]


def test_purchase_earns_points_and_bad_input_stores_nothing(world):
    c = client_for(world["app"], "clerk_a")
    html = c.get(f"/alliance/portal/?q={world['card']}").get_data(as_text=True)
    key = re.search(r'name="request_key" value="([0-9a-f]+)"', html).group(1)
    bad = c.post("/alliance/portal/purchase", data={"q": world["card"], "amount": "abc", "request_key": key, "csrf_token": csrf_from(html)})
    assert bad.status_code == 422 and "请输入金额" in bad.get_data(as_text=True)
    ok = c.post("/alliance/portal/purchase", data={"q": world["card"], "amount": "128.50", "request_key": key, "csrf_token": csrf_from(html)})
    assert ok.status_code == 302
    rows = world["s"].queries.list("alliance.purchase", SYSTEM, count="exact")
    assert rows.total == 1 and rows.rows[0]["merchant"] == world["a"] and rows.rows[0]["points"] == 128
    assert LedgerService(world["s"].engine).balances(world["member"])["reward"]["wallet"] == 1128


def test_users_not_linked_to_a_merchant_are_refused_and_english_works(world):
    out = client_for(world["app"], "outsider")
    resp = out.get("/alliance/portal/")
    assert resp.status_code == 403
    c = client_for(world["app"], "clerk_a")
    with c.session_transaction() as sess:
        sess["locale"] = "en"
    html = c.get(f"/alliance/portal/?q={world['card']}").get_data(as_text=True)
    assert "Verify a member" in html and "Redeem an offer" in html and "Record a purchase" in html


def test_staff_mapping_is_the_merchant_staff_child_table(world):
    s = world["s"]
    tables = s.records.table_cache.tables(s.store.catalog())
    staff = tables["alliance.merchant_staff"]
    with s.engine.connect() as conn:
        rows = conn.execute(select(staff.c.parent_id)).scalars().all()
    assert sorted(rows) == sorted([world["a"], world["b"]])


def test_the_portal_link_shows_for_merchant_staff_only(world):
    assert 'href="/alliance/portal/"' in client_for(world["app"], "clerk_a").get("/home").get_data(as_text=True)
    assert 'href="/alliance/portal/"' not in client_for(world["app"], "outsider").get("/home").get_data(as_text=True)


def test_linking_staff_is_audited(world):
    from crmkit.runtime.storage import platform_tables as pt

    with world["s"].engine.connect() as conn:
        rows = conn.execute(select(pt.audit.c.record_id).where(pt.audit.c.action == "staff_linked")).scalars().all()
    assert sorted(rows) == sorted([world["a"], world["b"]])
