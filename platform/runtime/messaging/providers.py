"""Delivery providers, one interface per channel: a logging provider (records what would be sent) for
development and tests, SMTP for email, and a generic JSON-over-HTTP adapter for SMS and WeChat gateways."""
from __future__ import annotations

import json
import logging
import smtplib
import ssl
import urllib.request
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingMessage:
    channel: str
    to: str
    subject: str | None
    body: str
    html: bool = False
    template: str | None = None
    data: dict = field(default_factory=dict)
    delivery_id: int | None = None
    headers: dict = field(default_factory=dict)  # email only: Message-ID, In-Reply-To, References (threading)


class ProviderError(Exception):
    """The provider refused or failed; the delivery job retries."""


class Provider(Protocol):
    name: str

    def send(self, message: OutgoingMessage) -> str:
        """Send and return the provider's reference for the message."""


class LoggingProvider:
    """Sends nothing: logs the message and keeps it in ``sent`` (the default when no gateway is configured)."""

    name = "log"

    def __init__(self):
        self.sent: list[OutgoingMessage] = []

    def send(self, message: OutgoingMessage) -> str:
        self.sent.append(message)
        log.info("message (%s) to %s would be sent: %s", message.channel, message.to, message.subject or message.body[:80])
        return f"log-{uuid.uuid4().hex[:12]}"


THREAD_HEADERS = ("Message-ID", "In-Reply-To", "References")


class SmtpEmailProvider:
    name = "smtp"

    def __init__(self, host: str, port: int, *, sender: str, user: str | None = None, password: str | None = None,
                 starttls: bool = False, timeout: float = 30):
        self.host, self.port, self.sender = host, port, sender
        self.user, self.password, self.starttls, self.timeout = user, password, starttls, timeout

    def send(self, message: OutgoingMessage) -> str:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = message.to
        msg["Subject"] = message.subject or ""
        extra = {k: v for k, v in (message.headers or {}).items() if k in THREAD_HEADERS and v}
        msg_id = extra.pop("Message-ID", None) or make_msgid(domain=self.sender.rpartition("@")[2] or "crmkit")
        msg["Message-ID"] = msg_id
        for name, value in extra.items():
            msg[name] = value
        if message.html:
            msg.set_content("This message is in HTML. / 此邮件为 HTML 格式。")
            msg.add_alternative(message.body, subtype="html")
        else:
            msg.set_content(message.body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise ProviderError(f"SMTP {self.host}:{self.port}: {exc}") from exc
        return msg_id


class HttpJsonProvider:
    """POSTs ``{"channel","to","subject","body","template","data"}`` as JSON with ``Authorization: Bearer <key>``.

    Point it at an SMS or WeChat template-message gateway (or an adapter in front of one); a 2xx answer is
    success and its JSON ``id`` (if any) becomes the provider reference.
    """

    name = "http"

    def __init__(self, url: str, key: str | None, *, timeout: float = 15):
        if not url.startswith(("https://", "http://")):
            raise ValueError("a provider URL starts with https:// or http://")
        self.url, self.key, self.timeout = url, key, timeout

    def send(self, message: OutgoingMessage) -> str:
        body = json.dumps({"channel": message.channel, "to": message.to, "subject": message.subject, "body": message.body,
                           "template": message.template, "data": message.data, "id": message.delivery_id}, ensure_ascii=False).encode()
        req = urllib.request.Request(self.url, data=body, method="POST", headers={"Content-Type": "application/json"})
        if self.key:
            req.add_header("Authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - the URL is operator configuration
                raw = resp.read(65536)
        except OSError as exc:
            raise ProviderError(f"{self.url}: {exc}") from exc
        try:
            ref = json.loads(raw or b"{}").get("id")
        except (ValueError, AttributeError):
            ref = None
        return str(ref) if ref else f"http-{uuid.uuid4().hex[:12]}"
