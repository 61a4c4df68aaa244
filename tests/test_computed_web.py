"""Computed fields and rules through HTTP: the record form (live visible_if/required_if round trip,
validation messages) and the REST API (read-only fields, filter/sort on formulas, OpenAPI)."""
from __future__ import annotations

import re

import pytest

from api_support import assert_error, filter_param, token_client
from computed_support import shop_documents
from conftest import csrf_from, login
from core_support import publish
from crmkit.runtime.actor import SYSTEM

ORDERS = "/api/v1/records/shop.order"


@pytest.fixture
def shop_app(make_app):
    app = make_app("base")
    publish(app.extensions["crmkit"], shop_documents())
    return app


@pytest.fixture
def web(shop_app):
    c = shop_app.test_client()
    login(c)
    return c


@pytest.fixture
def api(shop_app):
    resp = shop_app.test_client().post("/api/v1/security/login", json={"username": "admin", "password": _admin_password(), "provider": "db"})
    return token_client(shop_app, resp.get_json()["access_token"])


def _admin_password():
    from conftest import ADMIN_PASSWORD

    return ADMIN_PASSWORD


def field_box(html: str, name: str) -> str:
    m = re.search(r'<div class="field[^"]*" id="field-%s"[^>]*>' % name, html)
    assert m, name
    return html[m.start(): html.index("</div>", m.end()) + 6]


def test_form_renders_rules_and_round_trip_applies_them(web):
    html = web.get("/e/shop.order/new").get_data(as_text=True)
    assert 'hx-post="/e/shop.order/form-rules"' in html and 'hx-trigger="change from:#record-form"' in html
    assert " hidden" in field_box(html, "coupon").split(">")[0]  # no status yet: the coupon is hidden
    assert "required" not in field_box(html, "reason").split("</label>")[0]
    token = csrf_from(html)
    resp = web.post("/e/shop.order/form-rules", data={"title": "t", "status": "open", "amount": "5000"}, headers={"X-CSRFToken": token})
    assert resp.status_code == 200
    out = resp.get_data(as_text=True)
    coupon = field_box(out, "coupon")
    assert 'hx-swap-oob="true"' in coupon and " hidden" not in coupon.split(">")[0]
    assert 'class="required"' in coupon  # shown, and required while shown
    assert 'class="required"' in field_box(out, "reason")  # amount > 1000
    assert "field-title" not in out  # only fields with rules come back
    resp = web.post("/e/shop.order/form-rules", data={"status": "paid", "amount": "5"}, headers={"X-CSRFToken": token})
    out = resp.get_data(as_text=True)
    assert " hidden" in field_box(out, "coupon").split(">")[0]
    assert 'class="required"' not in field_box(out, "reason")


def test_form_rules_endpoint_needs_csrf(web):
    assert web.post("/e/shop.order/form-rules", data={"status": "open"}).status_code == 400


def test_form_save_enforces_rules_and_shows_computed_read_only(web, shop_app):
    services = shop_app.extensions["crmkit"]
    token = csrf_from(web.get("/e/shop.order/new").get_data(as_text=True))
    base = {"csrf_token": token, "title": "Form order", "status": "paid", "amount": "10", "qty": "3"}
    resp = web.post("/e/shop.order/new", data={**base, "start_date": "2024-03-01", "end_date": "2024-02-01"})
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "The end date must be after the start date." in field_box(html, "end_date") or "结束日期必须晚于开始日期" in field_box(html, "end_date")
    resp = web.post("/e/shop.order/new", data={**base, "status": "open"})
    assert resp.status_code == 422 and ("此项必填" in field_box(resp.get_data(as_text=True), "coupon")
                                        or "required" in field_box(resp.get_data(as_text=True), "coupon"))
    assert services.queries.list("shop.order", SYSTEM).rows == []
    resp = web.post("/e/shop.order/new", data={**base, "start_date": "2024-01-01", "end_date": "2024-02-01", "total": "999"})
    assert resp.status_code == 303
    rid = int(resp.headers["Location"].rsplit("/", 1)[1])
    assert str(services.queries.get("shop.order", rid, SYSTEM)["total"]) == "30.00"  # the posted "total" was not an input
    edit = web.get(f"/e/shop.order/{rid}/edit").get_data(as_text=True)
    assert 'name="total"' not in edit and "readonly-value" in field_box(edit, "total") and "30.00" in field_box(edit, "total")
    listing = web.get("/e/shop.order/").get_data(as_text=True)
    assert "Form order" in listing and "30.00" in listing and "2024-02-01" in listing  # total and renewal (ADD_MONTHS) columns
    assert 'href="/e/shop.order/?sort=total"' in listing  # a SQL formula sorts from its column header
    assert "sort=renewal" not in listing and ">续期</th>" in listing  # a Python-only one does not


def test_api_refuses_computed_input_and_enforces_rules(api, shop_app):
    body = assert_error(api.post(ORDERS, json={"title": "a", "status": "paid", "total": "1", "line_count": 3}), 422, "validation_failed")
    assert set(body["details"]["fields"]) == {"total", "line_count"}
    body = assert_error(api.post(ORDERS, json={"title": "a", "status": "paid", "start_date": "2024-02-01", "end_date": "2024-01-01"}),
                        422, "validation_failed")
    assert list(body["details"]["fields"]) == ["end_date"]
    body = assert_error(api.post(ORDERS, json={"title": "a", "status": "open"}), 422, "validation_failed")
    assert list(body["details"]["fields"]) == ["coupon"]
    assert shop_app.extensions["crmkit"].queries.list("shop.order", SYSTEM).rows == []


def test_api_filters_and_sorts_on_formula(api):
    for title, amount, qty in (("a", "10", 1), ("b", "400", 3), ("c", "50", 4)):
        assert api.post(ORDERS, json={"title": title, "status": "paid", "amount": amount, "qty": qty}).status_code == 201
    resp = api.get(f"{ORDERS}?sort=-total")
    assert [r["title"] for r in resp.get_json()["items"]] == ["b", "c", "a"]
    assert resp.get_json()["items"][0]["total"] == "1200.00" and resp.get_json()["items"][0]["big"] is True
    resp = api.get(f"{ORDERS}?filter={filter_param({'field': 'total', 'op': 'gte', 'value': '200'})}&sort=total")
    assert [r["title"] for r in resp.get_json()["items"]] == ["c", "b"]
    assert_error(api.get(f"{ORDERS}?filter={filter_param({'field': 'renewal', 'op': 'is_empty'})}"), 400, "bad_query")


def test_openapi_marks_computed_fields_read_only(api):
    spec = api.get("/api/v1/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    props = schemas["shop_order"]["properties"]
    for name in ("total", "big", "renewal", "who", "line_sum", "line_count"):
        assert props[name]["readOnly"] is True, name
        assert name not in schemas["shop_order_input"]["properties"], name
    assert props["total"]["type"] == ["string", "null"] and props["big"]["type"] == ["boolean", "null"]
    assert props["line_count"]["type"] == ["integer", "null"]


def test_form_rules_endpoint_needs_permission_to_fill_the_form(shop_app):
    from auth_support import STAFF_PASSWORD, add_user

    with shop_app.app_context():
        shop_app.appbuilder.sm.add_role("Outsider")
    add_user(shop_app, "outsider", role="Outsider")
    c = shop_app.test_client()
    login(c, "outsider", STAFF_PASSWORD)
    token = csrf_from(c.get("/home").get_data(as_text=True))
    resp = c.post("/e/shop.order/form-rules", data={"status": "open"}, headers={"X-CSRFToken": token})
    assert resp.status_code == 403 and "field-coupon" not in resp.get_data(as_text=True)
