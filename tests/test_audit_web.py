"""Audit coverage over HTTP (logins: form and API, success and failure, logout) and the admin audit page."""
from __future__ import annotations

import html

from sqlalchemy import select

from crmkit.runtime.audit import flush_sealer, record_event_now
from crmkit.runtime.audit.verify import verify_chain
from crmkit.runtime.storage import platform_tables as pt
from conftest import ADMIN_PASSWORD, csrf_from, login

A = pt.audit
VIEWER, VIEWER_PASSWORD = "vera", "viewer-pass-9"


def auth_entries(services):
    flush_sealer(services.engine)  # ordered by the chain: wait for PostgreSQL's background seal
    with services.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(A).where(A.c.category == "auth").order_by(A.c.seq)).mappings()]


def add_viewer(app):
    with app.app_context():
        sm = app.appbuilder.sm
        role = sm.add_role("Member viewer")
        sm.add_permission_role(role, sm.find_permission_view_menu("read", "entity:membership.member"))
        uid = sm.add_user(VIEWER, "Vera", "Viewer", "vera@example.com", role, VIEWER_PASSWORD).id
        app.extensions["sqlalchemy"].session.remove()
    return uid


def test_form_logins_success_failure_unknown_user_and_logout_are_audited(app, services):
    c = app.test_client()
    token = csrf_from(c.get("/login/").get_data(as_text=True))
    c.post("/login/", data={"username": "admin", "password": "wrong-password", "csrf_token": token})
    c.post("/login/", data={"username": "nobody-here", "password": "whatever-1", "csrf_token": token})
    login(c)
    c.get("/logout/")
    rows = auth_entries(services)
    assert [(r["action"], r["subject"]) for r in rows] == [("login_failed", "admin"), ("login_failed", "nobody-here"), ("login", "admin"), ("logout", "admin")]
    admin_id = rows[2]["actor_id"]
    # a failed attempt has no authenticated actor: the name tried is the subject
    assert admin_id is not None and rows[0]["actor_id"] is None and rows[1]["actor_id"] is None and rows[3]["actor_id"] == admin_id
    assert all(r["ip"] == "127.0.0.1" for r in rows)
    assert rows[0]["changes"] == {"path": "/login/"}
    # the password is never written anywhere in the audit
    assert not any("wrong-password" in str(r) for r in rows)
    with services.engine.connect() as conn:
        assert verify_chain(conn).ok


def test_api_logins_are_audited(app, services):
    c = app.test_client()
    bad = c.post("/api/v1/security/login", json={"username": "admin", "password": "nope-nope", "provider": "db"})
    assert bad.status_code == 401
    ok = c.post("/api/v1/security/login", json={"username": "admin", "password": ADMIN_PASSWORD, "provider": "db"})
    assert ok.status_code == 200
    rows = auth_entries(services)
    assert [(r["action"], r["subject"], r["changes"]["path"]) for r in rows] == [
        ("login_failed", "admin", "/api/v1/security/login"), ("login", "admin", "/api/v1/security/login")]


def test_audit_page_lists_and_searches_entries(client, services, actor):
    rid = services.records.create("membership.member", {"name": "李雷", "mobile": "13911112222", "joined_on": "2024-01-02"}, actor)
    record_event_now(services.engine, category="export", action="export", actor_id=1, entity="membership.member",
                     changes={"rows": 12, "view": "all"}, ip="10.1.2.3")
    page = client.get("/admin/audit/")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Audit log" in body or "审计日志" in body
    assert f"#{rid}" in body and "13911112222" in body  # admin sees the record's values (no mask on this field)
    assert "10.1.2.3" in body and html.escape("rows:") in body
    assert f'href="/e/membership.member/{rid}"' in body
    # filter by category: only the export entry
    body = client.get("/admin/audit/?category=export").get_data(as_text=True)
    assert "10.1.2.3" in body and "13911112222" not in body
    # search text matches the ip, the user name, the action
    assert "10.1.2.3" in client.get("/admin/audit/?q=10.1.2").get_data(as_text=True)
    body = client.get(f"/admin/audit/?entity=membership.member&record_id={rid}").get_data(as_text=True)
    assert "13911112222" in body and "10.1.2.3" not in body
    # the admin's own login is there, searchable by user name
    body = client.get("/admin/audit/?category=auth&actor=admin").get_data(as_text=True)
    assert "127.0.0.1" in body
    # nothing matches: an empty state that says what to do
    body = client.get("/admin/audit/?q=zzz-no-such-thing").get_data(as_text=True)
    assert "No audit entries match" in body or "没有符合条件的审计条目" in body


def test_audit_page_htmx_returns_only_the_region(client):
    resp = client.get("/admin/audit/?category=auth", headers={"HX-Request": "true", "HX-Target": "audit-region"})
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert body.lstrip().startswith('<div id="audit-region"') and "<html" not in body


def test_audit_page_pages_newest_first(client, services):
    for i in range(60):
        record_event_now(services.engine, category="export", action="export", changes={"n": f"item-{i:02d}"})
    first = client.get("/admin/audit/?category=export").get_data(as_text=True)
    assert "item-59" in first and "item-10" in first and "item-09" not in first
    nxt = html.unescape(first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0])
    assert "before=" in nxt and "category=export" in nxt
    second = client.get(nxt).get_data(as_text=True)
    assert "item-09" in second and "item-00" in second and "item-10" not in second


def test_bad_filters_get_a_400_with_a_clear_message(client):
    for query, message in [("category=gossip", "Unknown category"), ("record_id=abc", "positive whole number"),
                           ("from=yesterday", "use YYYY-MM-DD"), ("before=-5", "page link is not valid"), ("q=" + "x" * 101, "at most 100")]:
        resp = client.get("/admin/audit/?" + query)
        assert resp.status_code == 400, query
        assert message in html.unescape(resp.get_data(as_text=True)), query


def test_audit_page_is_for_administrators_only(app, services):
    add_viewer(app)
    c = app.test_client()
    login(c, VIEWER, VIEWER_PASSWORD)
    resp = c.get("/admin/audit/")
    assert resp.status_code == 403
    assert "Only administrators can read the audit log" in resp.get_data(as_text=True) or "只有管理员" in resp.get_data(as_text=True)
    assert "/admin/audit" not in c.get("/home").get_data(as_text=True)  # no nav entry either
    anon = app.test_client().get("/admin/audit/")
    assert anon.status_code in (302, 403)


def test_admin_nav_links_the_audit_page_in_both_languages(client):
    client.get("/locale/zh")
    assert "审计日志" in client.get("/home").get_data(as_text=True)
    client.get("/locale/en")
    body = client.get("/home").get_data(as_text=True)
    assert 'href="/admin/audit/"' in body and "Audit log" in body
