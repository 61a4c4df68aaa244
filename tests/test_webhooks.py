"""Outbound webhooks: signed deliveries verified by a real receiver, retries after a 500, policy-filtered payloads, admin pages."""
from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from api_support import member
from conftest import csrf_from
from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.permissions.admin import PermissionAdmin
from crmkit.runtime.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from jobs_support import make_due
from policy_support import mask_member_fields

M = "membership.member"
ADMIN = Actor(id=1, username="admin", is_admin=True)


class Receiver:
    """A local HTTP server that records each POST and answers with the next scripted status (then 200)."""

    def __init__(self, statuses=()):
        self.requests: list[dict] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                code = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def factory(statuses=()):
        r = Receiver(statuses)
        made.append(r)
        return r

    yield factory
    for r in made:
        r.close()


def restricted_role(app, services) -> int:
    """A role that reads members with ``notes`` hidden; mobile and email are masked for everyone."""
    mask_member_fields(services)
    with app.app_context():
        role_id = app.appbuilder.sm.add_role("HookReader").id
        app.extensions["sqlalchemy"].session.remove()
    entity = services.store.catalog().entity(M)
    perms = PermissionAdmin(services.engine, services.policy.rules, services.store.catalog)
    perms.set_actions(role_id, entity, {"read"}, actor_id=None)
    perms.set_field_rules(role_id, entity, {"notes": ("hidden", False)}, actor_id=None)
    perms.set_row_scope(role_id, entity, "all", None, actor_id=None)
    return role_id


def run_delivery(services):
    services.background.outbox.dispatch()
    return services.jobs.work_once()


def test_signed_delivery_with_a_payload_filtered_for_the_owner(app, services, receiver):
    r = receiver()
    role_id = restricted_role(app, services)
    hook, secret = services.webhooks.create({"name": "ERP", "url": r.url, "entity": M, "events": ["record.created", "record.updated"],
                                             "owner_role_id": role_id}, ADMIN)
    rid = services.records.create(M, member(notes="VIP，私密备注", email="zhang@example.com"), SYSTEM)
    assert run_delivery(services) == 1
    assert len(r.requests) == 1
    req = r.requests[0]
    headers, body = req["headers"], req["body"]
    assert verify(secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], now=time.time())
    assert not verify("whsec_wrong", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], now=time.time())
    assert not verify(secret, headers[TIMESTAMP_HEADER], body + b" ", headers[SIGNATURE_HEADER], now=time.time())  # body tampered
    assert not verify(secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], now=time.time() + 3600)  # replayed later
    payload = json.loads(body)
    assert payload["event"] == "record.created" and payload["record_id"] == rid and headers["X-Crmkit-Event"] == "record.created"
    assert "notes" not in payload["record"] and "notes" not in payload["changes"]  # hidden for the owner role: absent
    assert payload["record"]["mobile"] != "13800138000" and "*" in payload["record"]["mobile"]  # masked
    assert payload["record"]["email"] != "zhang@example.com"
    assert payload["record"]["name"] == "张伟"
    assert "13800138000" not in body.decode() and "私密" not in body.decode()
    # the same event dispatched again (at-least-once) is not delivered twice
    from crmkit.runtime.events import Event
    from crmkit.runtime.storage import platform_tables as pt

    with services.engine.connect() as conn:
        ev = conn.execute(pt.outbox.select().where(pt.outbox.c.record_id == rid)).mappings().first()
    services.webhooks.on_event(Event(ev["id"], ev["topic"], ev["entity"], ev["record_id"], ev["payload"], ev["created_at"]))
    services.jobs.work_once()
    assert len(r.requests) == 1
    assert [d["status"] for d in services.webhooks.deliveries(hook["id"])] == ["delivered"]
    # events the webhook did not ask for are not sent
    services.records.delete(M, rid, SYSTEM)
    run_delivery(services)
    assert len(r.requests) == 1


def test_admin_owner_sees_everything_and_unreadable_entities_send_nothing(app, services, receiver):
    r = receiver()
    hook, _ = services.webhooks.create({"name": "all", "url": r.url, "entity": M, "events": ["record.created"], "owner_role_id":
                                        _role_id(app, "Admin")}, ADMIN)
    with app.app_context():
        nobody = app.appbuilder.sm.add_role("Nobody").id
        app.extensions["sqlalchemy"].session.remove()
    services.webhooks.create({"name": "blind", "url": r.url, "entity": M, "events": ["record.created"], "owner_role_id": nobody}, ADMIN)
    services.records.create(M, member(notes="visible to admins"), SYSTEM)
    run_delivery(services)
    assert len(r.requests) == 1 and json.loads(r.requests[0]["body"])["record"]["notes"] == "visible to admins"
    assert len(services.webhooks.deliveries(hook["id"])) == 1


def _role_id(app, name):
    with app.app_context():
        return app.appbuilder.sm.find_role(name).id


def test_a_500_is_retried_with_backoff_then_delivered(app, services, receiver):
    r = receiver(statuses=[500, 503])
    hook, secret = services.webhooks.create({"name": "flaky", "url": r.url, "entity": M, "events": ["record.created"],
                                             "owner_role_id": _role_id(app, "Admin")}, ADMIN)
    services.records.create(M, member(), SYSTEM)
    run_delivery(services)
    d = services.webhooks.deliveries(hook["id"])[0]
    job = services.jobs.get(d["job_id"])
    assert (d["status"], d["attempts"], d["response_code"], d["error"]) == ("retrying", 1, 500, "HTTP 500")
    assert job["status"] == "queued" and job["attempts"] == 1
    assert 0 < (job["run_after"] - dt.datetime.now(dt.timezone.utc)).total_seconds() <= 5
    assert services.jobs.work_once() == 0  # the backoff has not passed
    make_due(services, d["job_id"])
    services.jobs.work_once()
    d = services.webhooks.deliveries(hook["id"])[0]
    assert (d["status"], d["attempts"], d["response_code"]) == ("retrying", 2, 503)
    wait = (services.jobs.get(d["job_id"])["run_after"] - dt.datetime.now(dt.timezone.utc)).total_seconds()
    assert 15 < wait <= 20  # exponential: 5 s after the first failure, 20 s after the second
    make_due(services, d["job_id"])
    services.jobs.work_once()
    d = services.webhooks.deliveries(hook["id"])[0]
    assert (d["status"], d["attempts"], d["response_code"], d["error"]) == ("delivered", 3, 200, None)
    assert len(r.requests) == 3
    bodies = {req["body"] for req in r.requests}
    assert len(bodies) == 1  # every retry sends the same payload, freshly signed
    assert all(verify(secret, q["headers"][TIMESTAMP_HEADER], q["body"], q["headers"][SIGNATURE_HEADER], now=time.time()) for q in r.requests)


def test_bad_webhooks_are_refused_and_nothing_is_stored(app, services):
    for data in ({"name": "", "url": "http://x", "entity": M, "events": ["record.created"], "owner_role_id": 1},
                 {"name": "a", "url": "ftp://x", "entity": M, "events": ["record.created"], "owner_role_id": 1},
                 {"name": "a", "url": "http://user:pw@x/", "entity": M, "events": ["record.created"], "owner_role_id": 1},
                 {"name": "a", "url": "http://x", "entity": "nope.nope", "events": ["record.created"], "owner_role_id": 1},
                 {"name": "a", "url": "http://x", "entity": M, "events": ["record.exploded"], "owner_role_id": 1},
                 {"name": "a", "url": "http://x", "entity": M, "events": ["record.created"], "owner_role_id": 99999},
                 {"name": "a", "url": "http://x", "entity": M, "events": ["record.created"]}):
        with pytest.raises(ValidationFailed):
            services.webhooks.create(data, ADMIN)
    assert services.webhooks.list() == []


def test_admin_pages_create_test_and_delete(app, client, services, receiver):
    r = receiver()
    page = client.get("/admin/webhooks/").get_data(as_text=True)
    token = csrf_from(page)
    assert "No webhooks yet" in page or "还没有 Webhook" in page
    form = {"name": "CRM sync", "url": r.url, "entity": M, "events": ["record.created", "record.deleted"], "owner_role_id": str(_role_id(app, "Admin"))}
    assert client.post("/admin/webhooks/", data=form).status_code == 400  # CSRF
    bad = client.post("/admin/webhooks/", data={**form, "url": "javascript:alert(1)", "csrf_token": token})
    assert bad.status_code == 422 and "http://" in bad.get_data(as_text=True) and services.webhooks.list() == []
    resp = client.post("/admin/webhooks/", data={**form, "csrf_token": token})
    html = resp.get_data(as_text=True)
    hook = services.webhooks.list()[0]
    assert resp.status_code == 200 and hook["secret"] in html and hook["events"] == ["record.created", "record.deleted"]
    assert hook["secret"] not in client.get("/admin/webhooks/").get_data(as_text=True)  # shown once
    assert client.post(f"/admin/webhooks/{hook['id']}/test", data={"csrf_token": token}).status_code == 302
    services.jobs.work_once()
    assert json.loads(r.requests[0]["body"])["event"] == "webhook.test"
    detail = client.get(f"/admin/webhooks/{hook['id']}").get_data(as_text=True)
    assert "webhook.test" in detail and ("Delivered" in detail or "已送达" in detail)
    from crmkit.runtime.audit.search import AuditFilter, search_entries

    with services.engine.connect() as conn:
        actions = [e["action"] for e in search_entries(conn, AuditFilter(category="integration"), timezone="UTC").rows]
    assert "webhook_create" in actions and "webhook_test" in actions
    assert client.post(f"/admin/webhooks/{hook['id']}/delete", data={"csrf_token": token}).status_code == 302
    assert services.webhooks.list() == []


def test_webhook_pages_are_for_admins_only(app, services):
    from auth_support import STAFF_PASSWORD, add_user
    from conftest import login

    add_user(app, "clerk", role="Public")
    c = app.test_client()
    login(c, "clerk", STAFF_PASSWORD)
    assert c.get("/admin/webhooks/").status_code == 403
