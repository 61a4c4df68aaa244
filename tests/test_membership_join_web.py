"""The online public join form (no login: CSRF, rate limit, signed challenge, honeypot) and the card panel on the
member page (buttons → dialog with a reason, CSRF). Flask test client against real databases."""
from __future__ import annotations

import re

import pytest

from crmkit.apps.membership.web.join import JOIN_RATE
from crmkit.runtime.actor import SYSTEM

from api_support import row_count
from conftest import csrf_from
from ledger_support import make_member

APPLICATIONS = "membership.application"
LIMIT = int(JOIN_RATE.split()[0])


def form_page(client) -> tuple[str, dict]:
    html = client.get("/join").get_data(as_text=True)
    a, b = map(int, re.search(r'id="join-question">(\d+) \+ (\d+) =', html).groups())
    token = re.search(r'name="challenge_token" value="([^"]+)"', html).group(1)
    return html, {"csrf_token": csrf_from(html), "challenge_token": token, "challenge": str(a + b), "consent": "yes",
                  "name": "韩梅梅", "mobile": "13912345678", "birthday": "1995-07-07"}


def test_the_form_is_public_and_bilingual(app):
    c = app.test_client()
    resp = c.get("/join")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "线上入会" in html and "Join online" in html and 'name="website"' in html


def test_a_valid_form_creates_an_online_application_and_thanks_the_visitor(app, services):
    c = app.test_client()
    _, data = form_page(c)
    resp = c.post("/join", data=data)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/join/thanks")
    page = c.get("/join/thanks").get_data(as_text=True)
    assert "申请已提交" in page and "Application received" in page
    rows = services.queries.list(APPLICATIONS, SYSTEM, count="exact").rows
    assert [(r["name"], r["mobile"], r["source"], r["workflow_state"], r["missing_fields"]) for r in rows] == [
        ("韩梅梅", "13912345678", "online", "submitted", "id_number")]


@pytest.mark.parametrize("case", ["no_csrf", "wrong_answer", "forged_token", "honeypot", "no_consent", "bad_mobile"])
def test_refused_forms_store_nothing(app, services, case):
    c = app.test_client()
    _, data = form_page(c)
    if case == "no_csrf":
        data.pop("csrf_token")
    elif case == "wrong_answer":
        data["challenge"] = str(int(data["challenge"]) + 1)
    elif case == "forged_token":
        data["challenge_token"] = data["challenge_token"][:-4] + "AAAA"
    elif case == "honeypot":
        data["website"] = "http://spam.example"
    elif case == "no_consent":
        data.pop("consent")
    else:
        data["mobile"] = "12345"
    resp = c.post("/join", data=data)
    html = resp.get_data(as_text=True)
    expected = {"no_csrf": 400, "honeypot": 302}.get(case, 422)
    assert resp.status_code == expected
    if case in ("wrong_answer", "forged_token"):
        assert "验证题答案不正确" in html and 'value="韩梅梅"' in html  # the visitor keeps what they typed
    if case == "bad_mobile":
        assert 'class="field has-error"' in html
    assert row_count(services, APPLICATIONS) == 0


def test_posts_are_rate_limited_per_client(app, services):
    c = app.test_client()
    statuses = []
    for i in range(LIMIT + 1):
        _, data = form_page(c)
        data["mobile"] = f"1391234{i:04d}"
        data["name"] = "韩梅梅" if i % 2 else "李雷"
        statuses.append(c.post("/join", data=data).status_code)
    assert statuses == [302] * LIMIT + [429]
    assert row_count(services, APPLICATIONS) == LIMIT
    assert c.get("/join").status_code == 200  # reading the form is not limited


def test_card_panel_buttons_dialog_reason_and_csrf(client, services, csrf_token):
    m = make_member(services)
    panel = client.get(f"/membership/cards/member/{m}/panel").get_data(as_text=True)
    assert 'data-card-action="report_lost"' in panel and 'data-card-action="unfreeze"' not in panel and "VIP00000001" in panel
    assert 'id="card-dialog-report_lost"' in panel and 'name="reason"' in panel
    resp = client.post(f"/membership/cards/member/{m}/report_lost", data={"reason": "挂失"})
    assert resp.status_code == 400  # no CSRF token
    resp = client.post(f"/membership/cards/member/{m}/report_lost", data={"reason": "", "csrf_token": csrf_token}, headers={"HX-Request": "true"})
    assert resp.status_code == 422 and ("请填写办理原因" in resp.get_data(as_text=True) or "Give a reason" in resp.get_data(as_text=True))
    assert services.queries.get("membership.member", m, SYSTEM)["status"] == "active"
    resp = client.post(f"/membership/cards/member/{m}/report_lost", data={"reason": "顾客来电挂失", "csrf_token": csrf_token},
                       headers={"HX-Request": "true"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and 'data-card-status="lost"' in html and "顾客来电挂失" in html and 'data-card-action="unfreeze"' in html
    assert services.queries.get("membership.member", m, SYSTEM)["status"] == "lost"
    detail = client.get(f"/e/membership.member/{m}").get_data(as_text=True)
    assert "membership/cards/member/" in detail


def test_card_pool_page_generates_batches_and_sets_the_mode(client, services, csrf_token, app):
    from conftest import login
    from crmkit.apps.membership.card_pool import card_mode
    from org_support import PASSWORD, add_user

    page = client.get("/membership/cards/pool")
    assert page.status_code == 200 and ("卡池为空" in page.get_data(as_text=True) or "The pool is empty" in page.get_data(as_text=True))
    resp = client.post("/membership/cards/pool/batch", data={"prefix": "MC", "start": "1", "count": "x", "csrf_token": csrf_token})
    assert resp.status_code == 422 and 'class="field has-error"' in resp.get_data(as_text=True)
    resp = client.post("/membership/cards/pool/batch", data={"prefix": "MC", "start": "1", "count": "5", "digits": "6", "check_digit": "on",
                                                              "csrf_token": csrf_token})
    assert resp.status_code == 302
    client.post("/membership/cards/pool/special", data={"card_no": "88888888", "csrf_token": csrf_token})
    client.post("/membership/cards/pool/mode", data={"mode": "pool", "csrf_token": csrf_token})
    html = client.get("/membership/cards/pool").get_data(as_text=True)
    assert 'data-pool="free">6<' in html and "MC0000018 – MC0000059" in html
    with services.engine.connect() as conn:
        assert card_mode(conn) == "pool"
    assert client.post("/membership/cards/pool/mode", data={"mode": "sequence"}).status_code == 400  # CSRF
    add_user(app, "desk", ["Front Desk"])
    other = app.test_client()
    login(other, "desk", PASSWORD)
    assert other.get("/home").status_code == 200  # signed in
    assert other.get("/membership/cards/pool").status_code == 403
