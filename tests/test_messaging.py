"""Messaging: a real SMTP server receives the email; sandboxed templates; consent refusals; rate limits; in-app bell."""
from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import redis as redis_lib

from api_support import member
from conftest import csrf_from, make_settings
from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.messaging import HttpJsonProvider, LoggingProvider, OutgoingMessage, RateLimiter, TemplateRefused, render
from crmkit.runtime.privacy.consent import grant_consent, withdraw_consent
from crmkit.runtime.services import Services
from jobs_support import make_due
from mail_support import free_port, smtp_server  # noqa: F401  (smtp_server is a fixture)

M = "membership.member"
ADMIN = Actor(id=1, username="admin", is_admin=True)


@pytest.fixture
def make_services(databases, tmp_path):
    built = []

    def factory(**overrides):
        settings = dataclasses.replace(make_settings(databases.fresh("membership"), tmp_path), **overrides)
        services = Services.build(settings)
        built.append(services)
        return services

    yield factory
    for s in built:
        s.engine.dispose()


def subject(services, *, channels=("email",), purpose="care", mobile="13800138000"):
    rid = services.records.create(M, member(mobile=mobile, email="zhang@example.com"), SYSTEM)
    for ch in channels:
        grant_consent(services, M, rid, {"channel": ch, "purpose": purpose, "version": "2024-01"}, SYSTEM)
    return rid


def test_email_reaches_a_real_smtp_server(make_services, smtp_server):
    controller, inbox = smtp_server
    services = make_services(smtp_host="127.0.0.1", smtp_port=controller.port, smtp_from="crm@shop.example")
    rid = subject(services)
    services.messaging.save_template("welcome", "email", "<p>您好 {{ name }}，欢迎加入 {{ shop }}！</p>", ADMIN,
                                     subject="欢迎 {{ name }}", html=True)
    d = services.messaging.send("email", to="zhang@example.com", subject_ref=(M, rid), template="welcome",
                                context={"name": "张伟<b>", "shop": "花店"}, purpose="care", actor=ADMIN)
    assert d["status"] == "queued" and d["job_id"]
    assert services.jobs.execute(d["job_id"]) == "succeeded"
    assert len(inbox.messages) == 1
    sender, rcpts, content = inbox.messages[0]
    assert sender == "crm@shop.example" and rcpts == ["zhang@example.com"]
    import email
    from email import policy

    msg = email.message_from_bytes(content, policy=policy.default)
    html = msg.get_body(("html",)).get_content()
    assert str(msg["Subject"]) == "欢迎 张伟<b>" and "您好 张伟&lt;b&gt;，欢迎加入 花店！" in html  # HTML escaped, subject plain text
    row = services.messaging.delivery(d["id"])
    assert row["status"] == "sent" and row["provider"] == "smtp" and row["provider_ref"] == str(msg["Message-ID"]) and row["attempts"] == 1
    assert services.jobs.execute(d["job_id"]) is None and len(inbox.messages) == 1  # never twice


def test_smtp_down_retries_then_fails(make_services):
    services = make_services(smtp_host="127.0.0.1", smtp_port=free_port(), job_max_attempts=2)
    rid = subject(services)
    d = services.messaging.send("email", to="zhang@example.com", subject_ref=(M, rid), subject="Hi", body="Hello", actor=ADMIN)
    assert services.jobs.execute(d["job_id"]) == "queued"
    row = services.messaging.delivery(d["id"])
    assert row["status"] == "queued" and row["attempts"] == 1 and "SMTP 127.0.0.1" in row["error"]
    make_due(services, d["job_id"])
    assert services.jobs.execute(d["job_id"]) == "failed"
    assert services.messaging.delivery(d["id"])["status"] == "failed" and services.jobs.get(d["job_id"])["attempts"] == 2


INJECTIONS = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ ''|attr('__class__') }}",
    "{{ (''|attr('__class__')|attr('__mro__')) }}",
    "{{ config }}{{ config.items() }}",
    "{{ self.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ name.__class__ }}",
    "{{ range(10**9)|list }}",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_template_injection_renders_nothing_dangerous(payload):
    try:
        out = render(payload, {"name": "张伟"})
    except TemplateRefused as exc:
        assert exc.field_errors["body"]
        return
    lowered = out.lower()
    for word in ("class", "object", "globals", "subclass", "popen", "uid=", "module", "function", "secret"):
        assert word not in lowered, (payload, out)
    assert len(out) < 200


def test_templates_render_placeholders_and_refuse_bad_syntax():
    assert render("Hi {{ name }}, {{ points }} points{% if vip %} (VIP){% endif %}", {"name": "Li", "points": 12, "vip": True}) == "Hi Li, 12 points (VIP)"
    assert render("<b>{{ x }}</b>", {"x": "<i>"}, html=True) == "<b>&lt;i&gt;</b>"
    assert render("{{ x }}", {"x": "<i>"}) == "<i>"  # plain text (SMS) is not escaped
    with pytest.raises(TemplateRefused):
        render("{{ name ", {})


def test_saving_a_broken_template_stores_nothing(make_services):
    services = make_services()
    with pytest.raises(ValidationFailed):
        services.messaging.save_template("bad", "sms", "{% for %}", ADMIN)
    with pytest.raises(ValidationFailed):
        services.messaging.save_template("bad", "fax", "hi", ADMIN)
    with pytest.raises(ValidationFailed):
        services.messaging.template("bad")
    services.messaging.save_template("good", "sms", "您好 {{ name }}", ADMIN)
    from crmkit.runtime.audit.search import AuditFilter, search_entries

    with services.engine.connect() as conn:
        entries = search_entries(conn, AuditFilter(category="integration"), timezone="UTC").rows
    assert [(e["action"], e["subject"]) for e in entries] == [("template_save", "good")]  # only the stored one, audited


def test_no_consent_is_logged_and_not_sent(make_services):
    services = make_services()
    rid = subject(services, channels=("email",))
    sms = services.messaging.providers["sms"]
    d = services.messaging.send("sms", to="13800138000", subject_ref=(M, rid), body="优惠券已到账", actor=ADMIN)
    assert d["status"] == "refused" and d["job_id"] is None and "no sms consent" in d["error"]
    other_purpose = services.messaging.send("email", to="z@example.com", subject_ref=(M, rid), body="x", purpose="marketing", actor=ADMIN)
    assert other_purpose["status"] == "refused"
    services.jobs.work_once()
    assert sms.sent == [] and services.messaging.providers["email"].sent == []
    assert [r["status"] for r in services.messaging.deliveries(entity=M, record_id=rid)] == ["refused", "refused"]
    with pytest.raises(ValidationFailed):
        services.messaging.send("sms", to="13800138000", body="no subject", actor=ADMIN)  # external channels need a subject


def test_consent_withdrawn_before_sending_stops_the_message(make_services):
    services = make_services()
    rid = subject(services, channels=("sms",))
    d = services.messaging.send("sms", to="13800138000", subject_ref=(M, rid), body="Hi {{ n }}", context={"n": 1}, actor=ADMIN)
    consent_id = [c for c in __import__("crmkit.runtime.privacy.consent", fromlist=["x"]).list_consents(services, M, rid, SYSTEM)][0]["id"]
    withdraw_consent(services, M, rid, consent_id, SYSTEM)
    assert services.jobs.execute(d["job_id"]) == "succeeded"
    assert services.messaging.delivery(d["id"])["status"] == "refused" and services.messaging.providers["sms"].sent == []


def test_logging_provider_records_what_would_be_sent(make_services):
    services = make_services()
    rid = subject(services, channels=("wechat",))
    d = services.messaging.send("wechat", to="openid-123", subject_ref=(M, rid), body="积分 {{ p }}", context={"p": 30}, actor=ADMIN)
    services.jobs.execute(d["job_id"])
    sent = services.messaging.providers["wechat"].sent
    assert [(m.channel, m.to, m.body) for m in sent] == [("wechat", "openid-123", "积分 30")]
    assert services.messaging.delivery(d["id"])["status"] == "logged"


def test_rate_limit_defers_without_spending_attempts(make_services):
    services = make_services(message_rate_per_minute=2)
    rid = subject(services, channels=("sms",))
    ds = [services.messaging.send("sms", to="13800138000", subject_ref=(M, rid), body=f"msg {i}", actor=ADMIN) for i in range(3)]
    assert [services.jobs.execute(d["job_id"]) for d in ds] == ["succeeded", "succeeded", "queued"]
    third = services.messaging.delivery(ds[2]["id"])
    job = services.jobs.get(ds[2]["job_id"])
    assert third["status"] == "deferred" and "rate limit" in third["error"] and job["attempts"] == 0 and job["run_after"] is not None
    assert [m.body for m in services.messaging.providers["sms"].sent] == ["msg 0", "msg 1"]
    # another channel has its own budget
    rid2 = subject(services, channels=("email",), mobile="13900139000")
    e = services.messaging.send("email", to="a@example.com", subject_ref=(M, rid2), body="x", actor=ADMIN)
    assert services.jobs.execute(e["job_id"]) == "succeeded"


def test_rate_limit_in_redis_and_in_the_database(base_services):
    client = redis_lib.Redis.from_url("redis://127.0.0.1:6379/15")
    prefix = f"crmkit-test:{uuid.uuid4().hex}"
    for limiter in (RateLimiter(base_services.engine, 3, redis=client, prefix=prefix), RateLimiter(base_services.engine, 3)):
        now = 1_700_000_010.0
        assert [limiter.hit("channel:sms", now=now) for _ in range(3)] == [None, None, None]
        assert limiter.hit("channel:sms", now=now) == pytest.approx(30.0)  # the window started 30 s before
        assert limiter.hit("channel:email", now=now) is None
        assert limiter.hit("channel:sms", now=now + 60) is None  # next window
    client.close()


def test_http_provider_posts_json_with_the_key():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.headers["Authorization"], json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            body = b'{"id": "gw-77"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        provider = HttpJsonProvider(f"http://127.0.0.1:{server.server_port}/sms", "k-123")
        ref = provider.send(OutgoingMessage(channel="sms", to="13800138000", subject=None, body="验证码 1234", delivery_id=9))
    finally:
        server.shutdown()
    assert ref == "gw-77"
    assert received == [("Bearer k-123", {"channel": "sms", "to": "13800138000", "subject": None, "body": "验证码 1234",
                                          "template": None, "data": {}, "id": 9})]
    with pytest.raises(ValueError):
        HttpJsonProvider("file:///etc/passwd", None)
    assert isinstance(LoggingProvider().send(OutgoingMessage("sms", "1", None, "x")), str)


def test_in_app_notifications_bell_and_mark_read(app, client):
    services = app.extensions["crmkit"]
    for i in range(3):
        d = services.messaging.send("in_app", to="1", subject=f"新会员 {i}", body="{{ who }} 刚刚注册", context={"who": "张伟"}, actor=ADMIN)
        services.jobs.execute(d["job_id"])
    other = services.messaging.send("in_app", to="999", body="not yours", actor=ADMIN)
    services.jobs.execute(other["job_id"])
    page = client.get("/home").get_data(as_text=True)
    assert 'id="notification-bell"' in page and 'hx-get="/notifications/bell"' in page and "every 30s" in page
    bell = client.get("/notifications/bell").get_data(as_text=True)
    assert 'class="bell-count"' in bell and ">3<" in bell
    page = client.get("/notifications/").get_data(as_text=True)
    assert page.count('class="unread"') == 3 and "张伟 刚刚注册" in page and "not yours" not in page
    token = csrf_from(page)
    from crmkit.runtime.messaging import list_notifications

    first = list_notifications(services.engine, 1)[-1]["id"]
    assert client.post(f"/notifications/{first}/read").status_code == 400  # no CSRF token
    assert client.post(f"/notifications/{first}/read", data={"csrf_token": token}).status_code == 302
    assert ">2<" in client.get("/notifications/bell").get_data(as_text=True)
    theirs = list_notifications(services.engine, 999)[0]["id"]
    client.post(f"/notifications/{theirs}/read", data={"csrf_token": token})
    assert list_notifications(services.engine, 999)[0]["read_at"] is None  # another user's notification is untouched
    client.post("/notifications/read-all", data={"csrf_token": token})
    assert "bell-count" not in client.get("/notifications/bell").get_data(as_text=True)
    client.get("/locale/zh")
    assert "没有未读" not in client.get("/notifications/").get_data(as_text=True) and "通知" in client.get("/notifications/").get_data(as_text=True)


def test_delivery_log_page_for_admins_with_masked_recipients(app, client):
    services = app.extensions["crmkit"]
    rid = subject(services, channels=("sms",))
    sent = services.messaging.send("sms", to="13800138000", subject_ref=(M, rid), body="您的积分已到账", actor=ADMIN)
    services.jobs.execute(sent["job_id"])
    services.messaging.send("email", to="zhang@example.com", subject_ref=(M, rid), body="no consent", actor=ADMIN)
    page = client.get("/admin/messages/").get_data(as_text=True)
    assert "138****8000" in page and "13800138000" not in page and "zhang@example.com" not in page
    assert ("Logged only" in page or "仅记录" in page) and ("No consent" in page or "未获同意" in page) and "no email consent" in page
    from auth_support import STAFF_PASSWORD, add_user
    from conftest import login

    add_user(app, "clerk", role="Public")
    other = app.test_client()
    login(other, "clerk", STAFF_PASSWORD)
    assert other.get("/admin/messages/").status_code == 403
