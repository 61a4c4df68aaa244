"""The CRM's public pages: lead and ticket web forms (CSRF, honeypot, rate limit) and the survey link."""
from __future__ import annotations

import time

import pytest
from itsdangerous import URLSafeTimedSerializer

from conftest import csrf_from
from crmkit.apps.crm.public import SURVEY_SALT, survey_path
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.installer import install


@pytest.fixture
def crm_app(make_app):
    app = make_app("base")
    s = app.extensions["crmkit"]
    install(s, "crm_sales")
    install(s, "crm_service")
    return app


def client_at(app, addr: str):
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = addr
    return c


def post_form(c, path, data):
    token = csrf_from(c.get(path).get_data(as_text=True))
    return c.post(path, data={**data, "csrf_token": token})


def leads(app):
    return app.extensions["crmkit"].queries.list("crm_sales.lead", SYSTEM, limit=50, count="exact")


def test_lead_form_creates_a_web_lead_without_login(crm_app):
    c = client_at(crm_app, "198.51.100.1")
    page = c.get("/p/crm/lead")
    assert page.status_code == 200 and 'name="website"' in page.get_data(as_text=True)
    resp = post_form(c, "/p/crm/lead", {"name": "陈静", "company": "深圳启明电子有限公司", "mobile": "13600001111", "description": "想了解专业版"})
    assert resp.status_code == 200
    rows = leads(crm_app).rows
    assert [(r["name"], r["company"], r["source"], r["status"], r["owner"]) for r in rows] == [("陈静", "深圳启明电子有限公司", "web", "new", None)]
    # the same person again: no second lead, an activity on the first, and the page does not say who is on file
    again = post_form(c, "/p/crm/lead", {"name": "陈静", "mobile": "13600001111", "description": "再问一次"})
    assert again.status_code == 200 and "13600001111" not in again.get_data(as_text=True)
    assert leads(crm_app).total == 1
    acts = crm_app.extensions["crmkit"].queries.list("crm.activity", SYSTEM, limit=5).rows
    assert [(a["regarding_type"], a["regarding_id"], a["notes"]) for a in acts] == [("lead", rows[0]["id"], "再问一次")]


def test_lead_form_refuses_missing_csrf_and_bad_input(crm_app):
    c = client_at(crm_app, "198.51.100.2")
    assert c.post("/p/crm/lead", data={"name": "无令牌"}).status_code == 400
    bad = post_form(c, "/p/crm/lead", {"name": "", "email": "not-an-email"})
    assert bad.status_code == 422 and 'class="error"' in bad.get_data(as_text=True)
    assert leads(crm_app).total == 0


def test_honeypot_submissions_are_dropped(crm_app):
    c = client_at(crm_app, "198.51.100.3")
    resp = post_form(c, "/p/crm/lead", {"name": "Bot", "mobile": "13600002222", "website": "http://spam.example"})
    assert resp.status_code == 200 and leads(crm_app).total == 0
    resp = post_form(c, "/p/crm/ticket", {"subject": "spam", "requester_email": "a@b.cn", "website": "x"})
    assert resp.status_code == 200
    assert crm_app.extensions["crmkit"].queries.list("crm_service.ticket", SYSTEM, count="exact").total == 0


def test_public_posts_are_rate_limited_per_address(crm_app):
    c = client_at(crm_app, "198.51.100.4")
    codes = [post_form(c, "/p/crm/lead", {"name": f"客户{i}", "mobile": f"1360000{i:04d}"}).status_code for i in range(7)]
    assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
    assert leads(crm_app).total == 5
    other = client_at(crm_app, "198.51.100.5")
    assert post_form(other, "/p/crm/lead", {"name": "别处", "mobile": "13700009999"}).status_code == 200


def test_ticket_form_then_staff_sees_it_with_sla(crm_app):
    c = client_at(crm_app, "198.51.100.6")
    resp = post_form(c, "/p/crm/ticket", {"requester_name": "周敏", "requester_mobile": "13512345678", "subject": "订单物流三天未更新",
                                           "category": "delivery", "order_ref": "SO20260301001"})
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "T0000001" in body
    t = crm_app.extensions["crmkit"].queries.list("crm_service.ticket", SYSTEM, limit=5).rows[0]
    assert (t["channel"], t["order_ref"], t["status"], t["sla_state"]) == ("web", "SO20260301001", "new", "on_track")
    assert t["resolution_due"] is not None


def test_survey_link_one_answer_and_bad_tokens(crm_app):
    s = crm_app.extensions["crmkit"]
    tid = s.records.create("crm_service.ticket", {"subject": "发票", "requester_email": "a@b.cn"}, SYSTEM)
    path = survey_path(s.settings.secret_key, tid)
    c = client_at(crm_app, "198.51.100.7")
    assert c.get(path[:-3] + "abc").status_code == 404  # tampered
    forged = URLSafeTimedSerializer("another-secret", salt=SURVEY_SALT).dumps({"t": tid})
    assert c.get(f"/p/crm/survey/{forged}").status_code == 404
    # not resolved yet: a rating is refused
    early = post_form(c, path, {"rating": "5"})
    assert early.status_code == 422 and "工单解决后才能评价" in early.get_data(as_text=True)
    assert s.queries.get("crm_service.ticket", tid, SYSTEM)["satisfaction"] is None
    row = s.queries.get("crm_service.ticket", tid, SYSTEM)
    s.records.update("crm_service.ticket", tid, {"status": "resolved"}, SYSTEM, expected_version=row["row_version"])
    assert post_form(c, path, {"rating": "9"}).status_code == 422
    ok = post_form(c, path, {"rating": "4", "comment": "很快"})
    assert ok.status_code == 200 and 'id="survey-done"' in ok.get_data(as_text=True)
    second = post_form(c, path, {"rating": "1"})
    assert second.status_code == 200
    t = s.queries.get("crm_service.ticket", tid, SYSTEM)
    assert (t["satisfaction"], t["satisfaction_comment"]) == (4, "很快")


def test_expired_survey_link_is_refused(crm_app, monkeypatch):
    s = crm_app.extensions["crmkit"]
    tid = s.records.create("crm_service.ticket", {"subject": "过期"}, SYSTEM)
    path = survey_path(s.settings.secret_key, tid)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 15 * 86400)  # 15 days later: past the 14-day lifetime
    assert crm_app.test_client().get(path).status_code == 410
