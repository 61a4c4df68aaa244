"""Automations over HTTP: the entity page (list, enable/disable with CSRF and audit, run log, simulate), the record
panel's manual button, the API endpoint, and the designer (problems by pointer, saves through the store)."""
from __future__ import annotations

from sqlalchemy import select

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.storage import platform_tables as pt

from automation_support import MEMBER, automation, member, runs, save
from conftest import csrf_from, login
from org_support import PASSWORD, add_role, add_user

PAGE = f"/automations/{MEMBER}"


def admin_client(app):
    c = app.test_client()
    login(c)
    return c


def test_page_lists_shipped_automations_and_toggles_with_csrf_and_audit(app, services):
    c = admin_client(app)
    page = c.get(PAGE)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "生日月祝福" in html and "新会员欢迎" in html and "自动化" in html
    en = c.get(PAGE, headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Birthday-month greeting" in en or "生日月祝福" in en
    url = f"{PAGE}/welcome/enabled"
    assert c.post(url, data={"enabled": "0"}).status_code == 400  # no CSRF token
    assert services.store.catalog().automations[f"{MEMBER}:welcome"].enabled is True
    resp = c.post(url, data={"enabled": "0", "csrf_token": csrf_from(html)})
    assert resp.status_code in (302, 303)
    assert services.store.catalog().automations[f"{MEMBER}:welcome"].enabled is False
    with services.engine.connect() as conn:
        audit = conn.execute(select(pt.audit.c.action, pt.audit.c.subject).where(pt.audit.c.action == "automation_disable")).all()
    assert [tuple(a) for a in audit] == [("automation_disable", f"automation:{MEMBER}:welcome")]
    assert len(services.store.history("automation", f"{MEMBER}:welcome")) == 2  # versioned by the metadata store
    # a disabled automation does not fire
    services.records.create(MEMBER, member(joined_on="2026-11-25"), SYSTEM)
    services.background.outbox.dispatch()
    assert runs(services, f"{MEMBER}:welcome") == []


def test_simulate_and_run_log(app, services):
    rid = services.records.create(MEMBER, member(birthday="1990-05-20"), SYSTEM)
    services.records.create(MEMBER, member(name="孙", mobile="13800000004", birthday="1985-06-17"), SYSTEM)
    c = admin_client(app)
    frag = c.get(f"{PAGE}/birthday_greeting/simulate?at=2026-05-03", headers={"HX-Request": "true"})
    html = frag.get_data(as_text=True)
    assert frag.status_code == 200 and f"#{rid} 王芳" in html and "孙" not in html and "<html" not in html
    assert runs(services) == []
    bad = c.get(f"{PAGE}/birthday_greeting/simulate?at=May")
    assert bad.status_code == 422
    save(services, automation("broken", {"type": "manual"}, [{"set": {"mobile": {"expr": "'x'"}}}]))
    services.automations.run_manual(MEMBER, rid, "broken", SYSTEM, request_id="q")
    log = c.get(f"{PAGE}?log=broken").get_data(as_text=True)
    assert "manual:q" in log and "action 1 (set)" in log and "失败" in log


def test_record_panel_button_and_api(app, services):
    save(services, automation("flag", {"type": "manual"}, [{"set": {"notes": "flagged"}}], label={"zh": "标记", "en": "Flag"}))
    rid = services.records.create(MEMBER, member(), SYSTEM)
    c = admin_client(app)
    detail = c.get(f"/e/{MEMBER}/{rid}").get_data(as_text=True)
    assert f"/automations/panel/{MEMBER}/{rid}" in detail  # the detail page loads the panel with htmx
    panel = c.get(f"/automations/panel/{MEMBER}/{rid}").get_data(as_text=True)
    assert "标记" in panel
    token = csrf_from(panel)
    url = f"/automations/{MEMBER}/{rid}/run/flag"
    assert c.post(url).status_code == 400
    assert c.post(url, data={"csrf_token": token}).status_code in (302, 303)
    assert services.queries.get(MEMBER, rid, SYSTEM)["notes"] == "flagged"
    api = f"/api/v1/records/{MEMBER}/{rid}/automations/flag"
    assert c.post(api, json={}).status_code in (400, 403)  # cookie call without X-CSRFToken
    resp = c.post(api, json={}, headers={"X-CSRFToken": token, "X-Request-Id": "req-7"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["status"] == "succeeded" and body["occurrence"] == "manual:req-7"
    again = c.post(api, json={}, headers={"X-CSRFToken": token, "X-Request-Id": "req-7"}).get_json()
    assert again["status"] is None  # the same request id acted once
    assert c.post(f"/api/v1/records/{MEMBER}/{rid}/automations/welcome", json={}, headers={"X-CSRFToken": token}).status_code == 422


def test_needs_builder_permission(app, services):
    add_role(app, "Reader", [("read", f"entity:{MEMBER}")])
    add_user(app, "reader", ["Reader"])
    c = app.test_client()
    login(c, "reader", PASSWORD)
    assert c.get(PAGE).status_code == 403
    assert c.get("/builder/automations/").status_code == 403
    assert c.get(f"{PAGE}/welcome/simulate").status_code == 403


def test_designer_shows_problems_by_pointer_and_saves(app, services):
    c = admin_client(app)
    page = c.get(f"/builder/automations/{MEMBER}/nudge")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "&#34;trigger&#34;" in html and "new_automation" not in html
    token = csrf_from(html)
    import json

    body = automation("nudge", {"type": "updated", "fields": ["nope"]}, [{"set": {"notes": "x"}}], condition="status = 'active' AND")
    resp = c.post(f"/builder/automations/{MEMBER}/nudge", data={"csrf_token": token, "definition": json.dumps(body)})
    text = resp.get_data(as_text=True)
    assert resp.status_code == 422 and "/trigger/fields/0" in text and "/condition" in text
    assert f"{MEMBER}:nudge" not in services.store.catalog().automations
    assert c.post(f"/builder/automations/{MEMBER}/nudge", data={"csrf_token": token, "definition": "{oops"}).status_code == 422
    body = automation("nudge", {"type": "updated", "fields": ["status"]}, [{"set": {"notes": "status changed"}}])
    resp = c.post(f"/builder/automations/{MEMBER}/nudge", data={"csrf_token": token, "definition": json.dumps(body)})
    assert resp.status_code in (302, 303)
    assert services.store.catalog().automations[f"{MEMBER}:nudge"].trigger.fields == ("status",)
    assert c.post(f"/builder/automations/{MEMBER}/nudge", data={"definition": json.dumps(body)}).status_code == 400  # CSRF
