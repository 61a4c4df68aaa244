"""Replies to the customer go out by email, threaded; internal notes never leave.

Creating a ``crm_service.ticket_message`` of kind ``reply`` (from the form, the API or code) emits a committed
``record.created`` event; the handler queues one ``crm_service.send_reply`` job per message (dedupe key), and the
job hands the mail to the messaging service with Message-ID / In-Reply-To / References, so the customer's mail
program shows it in the same conversation. The ticket (the data subject) needs email consent for purpose
``service``: mail-in tickets record it when they arrive; otherwise the delivery is logged as refused.
"""
from __future__ import annotations

import datetime as dt
from email.utils import make_msgid

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.i18n_text import text

from .mailthread import MESSAGE, TICKET, reply_headers

SEND_REPLY = "crm_service.send_reply"
PURPOSE = "service"


def message_validator(write) -> dict:
    """A reply needs a requester email on its ticket; the recipient is taken from there, never typed."""
    kind = write.get("kind") or "note"
    if not write.creating:
        if write.current.get("kind") != kind and (write.current.get("kind") != "note" or write.current.get("delivery_id")):
            return {"kind": [text("A sent message cannot change its type.", "已发送的消息不能更改类型。")]}
        return {}
    if kind != "reply":
        return {}
    t = write.tables[TICKET]
    row = write.conn.execute(t.select().with_only_columns(t.c.requester_email, t.c.subject).where(t.c.id == write.get("ticket"))).first()
    if row is None or not row.requester_email:
        return {"kind": [text("This ticket has no requester email to reply to; add a note instead, or fill in the requester email.",
                              "该工单没有提交人邮箱，无法回复；请改为内部备注，或先填写提交人邮箱。")]}
    write.values["to_address"] = row.requester_email
    if not write.get("subject"):
        write.values["subject"] = row.subject
    return {}


def on_message_created(services, event) -> None:
    """Queue the send job for a new reply (idempotent: one job per message however often the event arrives)."""
    row = services.queries.get(MESSAGE, event.record_id, SYSTEM)
    if row["kind"] == "reply" and not row.get("delivery_id"):
        services.jobs.submit(SEND_REPLY, {"message": event.record_id}, actor=None, dedupe_key=f"crm-reply:{event.record_id}")


def send_reply(services, message_id: int) -> dict:
    msg = services.queries.get(MESSAGE, message_id, SYSTEM)
    if msg["kind"] != "reply":
        return {"skipped": "not a reply"}  # notes and customer mail are never sent
    if msg.get("delivery_id"):
        return {"delivery": msg["delivery_id"]}  # already handed over: a rerun sends nothing twice
    ticket = services.queries.get(TICKET, msg["ticket"], SYSTEM)
    if msg.get("message_id"):  # a run that stopped after choosing the Message-ID: was the mail already queued?
        mid = msg["message_id"]
        queued = [d for d in services.messaging.deliveries(entity=TICKET, record_id=ticket["id"]) if (d.get("headers") or {}).get("Message-ID") == mid]
        headers = reply_headers(services, ticket["id"], mid)
    else:
        sender = services.settings.smtp_from
        mid = make_msgid(domain=sender.rpartition("@")[2] or "crmkit")
        headers = reply_headers(services, ticket["id"], mid)
        # the Message-ID and thread are recorded before the mail is queued, so a rerun finds what it queued
        msg = _save(services, msg, {"message_id": mid, "in_reply_to": headers.get("In-Reply-To"), "references": headers.get("References")})
        queued = []
    if queued:
        delivery = queued[-1]
    else:
        subject = msg.get("subject") or ticket["subject"]
        token = f"[#{ticket['number']}]"
        subject = f"Re: {subject}" if not subject.lower().startswith("re:") else subject
        if token not in subject:
            subject = f"{subject} {token}"
        delivery = services.messaging.send("email", to=msg["to_address"] or ticket["requester_email"], subject_ref=(TICKET, ticket["id"]),
                                           subject="{{ subject }}", body="{{ reply }}", context={"subject": subject, "reply": msg["body"]},
                                           purpose=PURPOSE, actor=SYSTEM, headers=headers)
    _save(services, msg, {"delivery_id": delivery["id"], "sent_at": dt.datetime.now(dt.timezone.utc).isoformat()})
    if ticket["status"] == "new":  # answering the customer is the first response
        services.records.update(TICKET, ticket["id"], {"status": "open"}, SYSTEM, expected_version=ticket["row_version"])
    return {"delivery": delivery["id"], "status": delivery["status"]}


def _save(services, msg: dict, values: dict) -> dict:
    services.records.update(MESSAGE, msg["id"], values, SYSTEM, expected_version=msg["row_version"])
    return services.queries.get(MESSAGE, msg["id"], SYSTEM)


def send_reply_job(ctx, payload: dict) -> dict:
    return send_reply(ctx.services, int(payload["message"]))
