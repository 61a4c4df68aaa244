"""Inbound email → tickets: a poller job reads new messages from the configured IMAP mailbox.

A message joins an existing ticket when its In-Reply-To / References name a message already on a ticket, or its
subject carries a ticket token such as ``[#T0000123]``; otherwise it opens a new ticket (channel ``email``). Each
message is stored as a ``crm_service.ticket_message`` keyed by its Message-ID (unique), so polling the same
mailbox again never takes a message twice. A message that cannot be taken (no sender, a write the record service
refuses) is logged, flagged ``$CrmkitRejected`` and skipped; the rest of the batch goes on.
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import hashlib
import imaplib
import logging
import re
import ssl
from dataclasses import dataclass

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.privacy.consent import grant_consent

from .mailthread import MESSAGE, TICKET, clean_ids, ticket_by_message_ids, ticket_by_number

log = logging.getLogger(__name__)
TOKEN = re.compile(r"\[#\s*(T)-?(\d{1,12})\]", re.IGNORECASE)
REJECTED = "$CrmkitRejected"
BODY_LIMIT = 50_000
REPLY_STATUSES = {"waiting_on_customer": "open", "resolved": "open", "closed": "open"}  # a customer's reply reopens


class MailboxNotConfigured(RuntimeError):
    """CRMKIT_IMAP_HOST is not set: the poller has nothing to read."""


@dataclass(frozen=True)
class Inbound:
    message_id: str
    sender: str
    sender_name: str
    subject: str
    body: str
    in_reply_to: list[str]
    references: list[str]
    received_at: dt.datetime
    attachments: list[tuple[str, str, bytes]]  # (filename, content type, data)


class Malformed(ValueError):
    """The message cannot become a ticket message (e.g. it has no sender address)."""


def connect(settings) -> imaplib.IMAP4:
    """An authenticated IMAP connection: implicit TLS (ssl), STARTTLS, or plain (for a local server only)."""
    if not settings.imap_host:
        raise MailboxNotConfigured("Set CRMKIT_IMAP_HOST (and _USER, _PASSWORD) to poll a mailbox.")
    security = settings.imap_security
    port = settings.imap_port or (993 if security == "ssl" else 143)
    if security == "ssl":
        conn = imaplib.IMAP4_SSL(settings.imap_host, port, ssl_context=ssl.create_default_context(), timeout=30)
    else:
        conn = imaplib.IMAP4(settings.imap_host, port, timeout=30)
        if security == "starttls":
            conn.starttls(ssl_context=ssl.create_default_context())
    conn.login(settings.imap_user or "", settings.imap_password or "")
    return conn


def parse(raw: bytes) -> Inbound:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    try:
        name, addr = email.utils.parseaddr(str(msg.get("From", "")))
    except Exception as exc:  # a header the parser gives up on
        raise Malformed(f"unreadable From header: {exc}") from None
    if not addr or "@" not in addr:
        raise Malformed("the message has no sender address")
    ids = clean_ids(str(msg.get("Message-ID", "")))
    # a message without a Message-ID gets a stable one from its content, so re-polling still finds it
    message_id = ids[0] if ids else f"<sha256.{hashlib.sha256(raw).hexdigest()[:40]}@crmkit.invalid>"
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
        body = part.get_content() if part is not None else ""
    except (LookupError, ValueError) as exc:
        raise Malformed(f"unreadable body: {exc}") from None
    if part is not None and part.get_content_type() == "text/html":
        body = re.sub(r"<[^>]+>", " ", body)  # kept as text; the ticket never renders mail HTML
    attachments = []
    for att in msg.iter_attachments():
        data = att.get_payload(decode=True) or b""
        attachments.append((att.get_filename() or "attachment", att.get_content_type(), data))
    try:
        received = email.utils.parsedate_to_datetime(str(msg.get("Date"))) if msg.get("Date") else None
    except (TypeError, ValueError):
        received = None
    if received is None or received.tzinfo is None:
        received = dt.datetime.now(dt.timezone.utc)
    subject = " ".join(str(msg.get("Subject", "") or "").split())[:300]
    return Inbound(message_id=message_id, sender=addr.strip()[:300], sender_name=(name or addr.split("@")[0])[:50], subject=subject,
                   body=(body or "").strip()[:BODY_LIMIT] or "(empty)", in_reply_to=clean_ids(str(msg.get("In-Reply-To", "") or "")),
                   references=clean_ids(str(msg.get("References", "") or "")), received_at=received, attachments=attachments)


def _already_taken(services, message_id: str) -> bool:
    return bool(services.queries.list(MESSAGE, SYSTEM, filter={"field": "message_id", "op": "eq", "value": message_id},
                                      limit=1, count="none", labels=False).rows)


def _store_attachments(services, inbound: Inbound) -> list:
    return [services.records.store_file(services.settings.upload_dir, name, ctype, data, SYSTEM)["id"]
            for name, ctype, data in inbound.attachments]


def take(services, inbound: Inbound) -> dict:
    """Put one message on its ticket (or a new one); returns ``{"ticket", "message", "created"}`` or ``{}`` if known."""
    if _already_taken(services, inbound.message_id):
        return {}
    ticket = ticket_by_message_ids(services, [*inbound.in_reply_to, *inbound.references])
    if ticket is None:
        token = TOKEN.search(inbound.subject)
        ticket = ticket_by_number(services, token.group(2)) if token else None
    created = ticket is None
    if created:
        tid = services.records.create(TICKET, {"subject": inbound.subject or "(no subject)", "description": inbound.body[:10000],
                                               "channel": "email", "requester_email": inbound.sender, "requester_name": inbound.sender_name,
                                               "status": "new"}, SYSTEM)
        # the customer wrote to us by email and expects the answer there: consent for service replies by email
        grant_consent(services, TICKET, tid, {"channel": "email", "purpose": "service", "version": "inbound-email"}, SYSTEM)
    else:
        tid = ticket["id"]
    mid = services.records.create(MESSAGE, {"ticket": tid, "kind": "customer", "subject": inbound.subject, "body": inbound.body,
                                            "from_address": inbound.sender, "message_id": inbound.message_id,
                                            "in_reply_to": inbound.in_reply_to[0] if inbound.in_reply_to else None,
                                            "references": " ".join(inbound.references)[:10000] or None,
                                            "received_at": inbound.received_at.isoformat(), "attachments": _store_attachments(services, inbound)}, SYSTEM)
    if not created and ticket["status"] in REPLY_STATUSES:
        services.records.update(TICKET, tid, {"status": REPLY_STATUSES[ticket["status"]]}, SYSTEM, expected_version=ticket["row_version"])
    return {"ticket": tid, "message": mid, "created": created}


def poll(services, *, mailbox=None) -> dict:
    """Read the unseen messages of the configured mailbox; mark each taken one seen. Returns counts."""
    conn = mailbox or connect(services.settings)
    counts = {"tickets": 0, "replies": 0, "known": 0, "rejected": 0}
    try:
        typ, _ = conn.select(services.settings.imap_folder)
        if typ != "OK":
            raise RuntimeError(f"IMAP folder {services.settings.imap_folder!r} cannot be opened")
        typ, data = conn.uid("SEARCH", None, "UNSEEN")
        for uid in (data[0] or b"").split():
            typ, fetched = conn.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next((part[1] for part in fetched if isinstance(part, tuple)), None)
            try:
                if raw is None:
                    raise Malformed("the server returned no message body")
                result = take(services, parse(raw))
            except (Malformed, ValidationFailed) as exc:
                detail = exc.field_errors if isinstance(exc, ValidationFailed) else exc
                log.warning("inbound mail uid %s skipped: %s", uid.decode(), detail)
                conn.uid("STORE", uid, "+FLAGS", f"(\\Seen {REJECTED})")
                counts["rejected"] += 1
                continue
            conn.uid("STORE", uid, "+FLAGS", "(\\Seen)")
            if not result:
                counts["known"] += 1
            else:
                counts["tickets" if result["created"] else "replies"] += 1
    finally:
        if mailbox is None:
            try:
                conn.logout()
            except (OSError, imaplib.IMAP4.error):
                pass
    return counts


def poll_job(ctx, payload: dict) -> dict:
    """The scheduled job: does nothing until a mailbox is configured, and only while the service app is installed."""
    services = ctx.services
    if not services.settings.imap_host or TICKET not in services.store.catalog().entities:
        return {"skipped": "no mailbox configured" if not services.settings.imap_host else "crm_service not installed"}
    return poll(services)
