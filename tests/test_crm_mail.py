"""Service tickets by email, against a real local IMAP server (Dovecot) and SMTP server (aiosmtpd): inbound mail
opens a ticket, a reply threads onto it, re-polling takes nothing twice, a malformed mail is logged and skipped;
a reply to the customer goes out with threading headers; an internal note is never sent."""
from __future__ import annotations

import dataclasses
import email
import logging
from email import policy
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from core_support import build_services
from crmkit.apps.crm.mail_in import MailboxNotConfigured, poll, poll_job
from crmkit.apps.crm.mail_out import SEND_REPLY
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.installer import install
from crmkit.runtime.storage import platform_tables as pt
from mail_support import imap_server, smtp_server  # noqa: F401

TICKET, MESSAGE = "crm_service.ticket", "crm_service.ticket_message"


@pytest.fixture
def mail_crm(databases, tmp_path_factory, imap_server, smtp_server):  # noqa: F811
    controller, _ = smtp_server
    base = build_services(databases.fresh("base"), tmp_path_factory.mktemp("var"))
    settings = dataclasses.replace(base.settings, imap_host=imap_server.host, imap_port=imap_server.port, imap_user=imap_server.user,
                                   imap_password=imap_server.password, imap_security="plain",
                                   smtp_host="127.0.0.1", smtp_port=controller.port, smtp_from="service@shop.example")
    base.engine.dispose()
    from crmkit.runtime.services import Services

    s = Services.build(settings)
    install(s, "crm_service")
    yield s
    s.engine.dispose()


def mail(subject: str, body: str, *, sender="王芳 <wang.fang@customer.example>", message_id=None, in_reply_to=None, references=None,
         attachment: tuple[str, bytes] | None = None) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, "support@shop.example", subject
    if message_id:
        m["Message-ID"] = message_id
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
    if references:
        m["References"] = references
    m.set_content(body)
    if attachment:
        m.add_attachment(attachment[1], maintype="application", subtype="pdf", filename=attachment[0])
    return m.as_bytes()


def tickets(s) -> list[dict]:
    return s.queries.list(TICKET, SYSTEM, sort=["id"], limit=100, count="none", labels=False).rows


def messages(s, ticket_id=None) -> list[dict]:
    flt = {"field": "ticket", "op": "eq", "value": ticket_id} if ticket_id else None
    return s.queries.list(MESSAGE, SYSTEM, filter=flt, sort=["id"], limit=100, count="none", labels=False).rows


def run_jobs(s, kind: str) -> list[int]:
    with s.engine.connect() as conn:
        ids = [r.id for r in conn.execute(select(pt.job.c.id).where(pt.job.c.kind == kind, pt.job.c.status == "queued").order_by(pt.job.c.id))]
    for jid in ids:
        assert s.jobs.execute(jid) == "succeeded", s.jobs.get(jid)
    return ids


def dispatch(s) -> None:
    while s.background.outbox.dispatch():
        pass


def test_inbound_mail_opens_a_ticket_a_reply_threads_and_repolling_takes_nothing_twice(mail_crm, imap_server):  # noqa: F811
    s = mail_crm
    imap_server.deliver(mail("订单 SO20261101 发票开错了", "您好，发票抬头应为上海某某公司。", message_id="<first.1@customer.example>",
                             attachment=("发票.pdf", b"%PDF-1.4 test")))
    assert poll(s) == {"tickets": 1, "replies": 0, "known": 0, "rejected": 0}
    [t] = tickets(s)
    assert (t["subject"], t["channel"], t["requester_email"], t["requester_name"], t["status"]) == (
        "订单 SO20261101 发票开错了", "email", "wang.fang@customer.example", "王芳", "new")
    [m] = messages(s, t["id"])
    assert m["kind"] == "customer" and m["message_id"] == "<first.1@customer.example>" and "上海某某公司" in m["body"]
    assert [a["name"] for a in m["attachments"]] == ["发票.pdf"] and m["attachments"][0]["size"] == len(b"%PDF-1.4 test")

    # the customer answers our (imagined) mail: In-Reply-To names their first message → same ticket
    imap_server.deliver(mail("Re: 订单 SO20261101 发票开错了", "补充：税号 91310000XXXX。", message_id="<second.2@customer.example>",
                             in_reply_to="<first.1@customer.example>", references="<first.1@customer.example>"))
    # a new thread that names the ticket in its subject token also lands on it
    imap_server.deliver(mail(f"再次询问 [#{t['number']}]", "请尽快处理。", message_id="<third.3@customer.example>"))
    # and an unrelated mail opens a second ticket
    imap_server.deliver(mail("账号无法登录", "提示密码错误。", sender="li.lei@other.example", message_id="<other.9@other.example>"))
    assert poll(s) == {"tickets": 1, "replies": 2, "known": 0, "rejected": 0}
    assert len(tickets(s)) == 2
    assert [m["message_id"] for m in messages(s, t["id"])] == ["<first.1@customer.example>", "<second.2@customer.example>", "<third.3@customer.example>"]

    # re-polling: nothing unseen → nothing; even with every \Seen flag removed, Message-IDs stop duplicates
    assert poll(s) == {"tickets": 0, "replies": 0, "known": 0, "rejected": 0}
    imap_server.mark_all_unseen()
    assert poll(s) == {"tickets": 0, "replies": 0, "known": 4, "rejected": 0}
    assert len(tickets(s)) == 2 and len(messages(s)) == 4


def test_a_malformed_mail_is_logged_and_skipped_without_losing_the_others(mail_crm, imap_server, caplog):  # noqa: F811
    s = mail_crm
    imap_server.deliver(mail("好的一封", "正文一", message_id="<ok.1@customer.example>"))
    imap_server.deliver(b"From: \r\nSubject: broken\r\nMessage-ID: <broken.1@x.example>\r\n\r\nno sender\r\n")
    imap_server.deliver(mail("好的两封", "正文二", sender="zhao@customer.example", message_id="<ok.2@customer.example>"))
    with caplog.at_level(logging.WARNING, logger="crmkit.apps.crm.mail_in"):
        assert poll(s) == {"tickets": 2, "replies": 0, "known": 0, "rejected": 1}
    assert any("skipped" in r.getMessage() and "no sender address" in r.getMessage() for r in caplog.records)
    assert sorted(t["subject"] for t in tickets(s)) == ["好的一封", "好的两封"]
    assert sum("$CrmkitRejected" in f for f in imap_server.flags()) == 1
    assert poll(s)["rejected"] == 0  # flagged seen: not retried and re-logged every minute


def test_a_reply_reaches_smtp_with_threading_headers_and_a_note_is_never_sent(mail_crm, imap_server, smtp_server):  # noqa: F811
    s, (_, inbox) = mail_crm, smtp_server
    imap_server.deliver(mail("设备开机异常", "开机后屏幕不亮。", message_id="<dev.1@customer.example>"))
    poll(s)
    [t] = tickets(s)
    note = s.records.create(MESSAGE, {"ticket": t["id"], "kind": "note", "body": "内部：疑似电源板故障，先别告诉客户。"}, SYSTEM)
    reply = s.records.create(MESSAGE, {"ticket": t["id"], "kind": "reply", "body": "您好，请长按电源键 10 秒后重试。{{ not a template }}"}, SYSTEM)
    dispatch(s)
    assert len(run_jobs(s, SEND_REPLY)) == 1  # one job: for the reply, none for the note
    run_jobs(s, "messaging.send")
    assert len(inbox.messages) == 1
    sender, rcpts, raw = inbox.messages[0]
    assert sender == "service@shop.example" and rcpts == ["wang.fang@customer.example"]
    out = email.message_from_bytes(raw, policy=policy.default)
    sent = s.queries.get(MESSAGE, reply, SYSTEM)
    assert str(out["Message-ID"]) == sent["message_id"] and sent["delivery_id"] and sent["sent_at"]
    assert str(out["In-Reply-To"]) == "<dev.1@customer.example>" and str(out["References"]) == "<dev.1@customer.example>"
    assert str(out["Subject"]) == f"Re: 设备开机异常 [#{t['number']}]"
    assert out.get_body(("plain",)).get_content().strip() == "您好，请长按电源键 10 秒后重试。{{ not a template }}"
    assert "电源板" not in raw.decode("utf-8", "replace") and s.queries.get(MESSAGE, note, SYSTEM)["delivery_id"] is None
    assert s.queries.get(TICKET, t["id"], SYSTEM)["status"] == "open"  # answering counts as the first response

    # the customer answers our reply: their mail names our Message-ID → the same ticket, and a second reply
    # references the whole thread
    imap_server.deliver(mail("Re: 设备开机异常", "还是不行。", message_id="<dev.2@customer.example>", in_reply_to=sent["message_id"],
                             references=f"<dev.1@customer.example> {sent['message_id']}"))
    assert poll(s)["replies"] == 1 and len(tickets(s)) == 1
    s.records.create(MESSAGE, {"ticket": t["id"], "kind": "reply", "body": "已为您安排上门检修。"}, SYSTEM)
    dispatch(s)
    run_jobs(s, SEND_REPLY)
    run_jobs(s, "messaging.send")
    second = email.message_from_bytes(inbox.messages[1][2], policy=policy.default)
    assert str(second["In-Reply-To"]) == "<dev.2@customer.example>"
    assert str(second["References"]).split() == ["<dev.1@customer.example>", sent["message_id"], "<dev.2@customer.example>"]
    dispatch(s)  # events delivered again are harmless: no second job, no second mail
    assert run_jobs(s, SEND_REPLY) == [] and len(inbox.messages) == 2


def test_a_reply_needs_a_requester_email(mail_crm):
    s = mail_crm
    tid = s.records.create(TICKET, {"subject": "电话来电", "channel": "phone"}, SYSTEM)
    with pytest.raises(ValidationFailed) as exc:
        s.records.create(MESSAGE, {"ticket": tid, "kind": "reply", "body": "您好"}, SYSTEM)
    assert "kind" in exc.value.field_errors and messages(s, tid) == []
    s.records.create(MESSAGE, {"ticket": tid, "kind": "note", "body": "客户来电，已记录"}, SYSTEM)  # a note is fine
    assert [m["kind"] for m in messages(s, tid)] == ["note"]


def test_the_poller_needs_a_configured_mailbox(crm_without_mail):
    s = crm_without_mail
    assert poll_job(type("Ctx", (), {"services": s})(), {}) == {"skipped": "no mailbox configured"}
    with pytest.raises(MailboxNotConfigured):
        poll(s)


@pytest.fixture
def crm_without_mail(databases, tmp_path_factory):
    s = build_services(databases.fresh("base"), tmp_path_factory.mktemp("var"))
    install(s, "crm_service")
    yield s
    s.engine.dispose()


def test_imap_settings_come_from_the_environment():
    from crmkit.runtime.config import ConfigError, Settings

    s = Settings.from_env({"CRMKIT_IMAP_HOST": "imap.example.com", "CRMKIT_IMAP_USER": "support@example.com", "CRMKIT_IMAP_PASSWORD": "app-pass",
                           "CRMKIT_IMAP_SECURITY": "STARTTLS", "CRMKIT_IMAP_FOLDER": "Support"})
    assert (s.imap_host, s.imap_port, s.imap_user, s.imap_security, s.imap_folder) == ("imap.example.com", None, "support@example.com", "starttls", "Support")
    assert Settings.from_env({}).imap_host is None and Settings.from_env({}).imap_security == "ssl"
    with pytest.raises(ConfigError, match="CRMKIT_IMAP_SECURITY must be one of ssl, starttls, plain"):
        Settings.from_env({"CRMKIT_IMAP_SECURITY": "tls"})
