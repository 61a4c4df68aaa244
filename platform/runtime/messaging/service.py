"""MessagingService: render → consent → queue a delivery job → (rate limit, consent again) → provider → log.

Every message is a row in ``crmkit_message_delivery`` from the moment it is asked for: refused for lack of
consent (never sent), queued, deferred by the rate limit, sent, or failed after the job's retries. Email,
SMS and WeChat go to a data subject (an entity record) and need that subject's consent for the channel,
checked when the message is queued and again right before it is sent. In-app notifications go to users.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine, select

from ..actor import Actor
from ..audit import record_event
from ..db import inserted_id, read_transaction, write_transaction
from ..errors import ValidationFailed
from ..i18n_text import text
from ..jobs import JobRegistry, JobService, RetryLater
from ..privacy.consent import has_consent
from ..storage import platform_tables as pt
from .notifications import create_notification
from .providers import THREAD_HEADERS, OutgoingMessage, Provider
from .ratelimit import RateLimiter
from .templates import check_template, render

EXTERNAL = ("email", "sms", "wechat")
CHANNELS = (*EXTERNAL, "in_app")
SEND_JOB = "messaging.send"

QUEUED, REFUSED, DEFERRED, SENT, LOGGED, FAILED = "queued", "refused", "deferred", "sent", "logged", "failed"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class MessagingService:
    def __init__(self, engine: Engine, jobs: JobService, providers: dict[str, Provider], limiter: RateLimiter):
        self.engine, self.jobs, self.providers, self.limiter = engine, jobs, providers, limiter

    def register_jobs(self, registry: JobRegistry) -> None:
        registry.register(SEND_JOB, self._run_delivery)

    # -- templates ----------------------------------------------------------------------------------
    def save_template(self, key: str, channel: str, body: str, actor: Actor, *, subject: str | None = None, html: bool = False) -> None:
        if channel not in CHANNELS:
            raise ValidationFailed({"channel": [text("Choose a channel: {c}.", "请选择渠道：{c}。", c=", ".join(CHANNELS))]})
        if not key or len(key) > 100:
            raise ValidationFailed({"key": [text("A template key is 1-100 characters.", "模板键为 1-100 个字符。")]})
        check_template(body)
        if subject is not None:
            check_template(subject, field="subject")
        values = dict(channel=channel, subject=subject, body=body, html=html, updated_at=_now(), updated_by=actor.id)
        t = pt.message_template
        with write_transaction(self.engine) as conn:
            if conn.execute(t.update().where(t.c.key == key).values(**values)).rowcount == 0:
                conn.execute(t.insert().values(key=key, **values))
            record_event(conn, category="integration", action="template_save", actor_id=actor.id, subject=key,
                         changes={"channel": channel, "subject": subject, "body": body, "html": html})

    def template(self, key: str) -> dict:
        with read_transaction(self.engine) as conn:
            row = conn.execute(select(pt.message_template).where(pt.message_template.c.key == key)).mappings().first()
        if row is None:
            raise ValidationFailed({"template": [text("There is no message template '{key}'.", "没有消息模板“{key}”。", key=key)]})
        return dict(row)

    # -- sending ------------------------------------------------------------------------------------
    def send(self, channel: str, *, to: str, actor: Actor | None, subject_ref: tuple[str, int] | None = None,
             template: str | None = None, subject: str | None = None, body: str | None = None, html: bool = False,
             context: dict | None = None, purpose: str | None = None, headers: dict | None = None) -> dict:
        """Queue one message; returns its delivery row. Refusals (no consent) are logged, not raised.
        ``headers`` (email only) may set Message-ID, In-Reply-To and References, so a reply threads."""
        if channel not in CHANNELS:
            raise ValidationFailed({"channel": [text("Choose a channel: {c}.", "请选择渠道：{c}。", c=", ".join(CHANNELS))]})
        if not isinstance(to, str) or not to.strip() or len(to) > 300:
            raise ValidationFailed({"to": [text("Give the recipient (1-300 characters).", "请填写收件人（1-300 个字符）。")]})
        if channel in EXTERNAL and subject_ref is None:
            raise ValidationFailed({"to": [text("Email, SMS and WeChat messages go to a record (a member, a contact) whose consent is checked.",
                                               "邮件、短信和微信消息必须发给一条记录（会员、联系人），以便检查其同意。")]})
        context = dict(context or {})
        if template is not None:
            tpl = self.template(template)
            if tpl["channel"] != channel:
                raise ValidationFailed({"template": [text("Template '{key}' is for {c}.", "模板“{key}”用于{c}。", key=template, c=tpl["channel"])]})
            subject, body, html = tpl["subject"], tpl["body"], tpl["html"]
        if body is None:
            raise ValidationFailed({"body": [text("Give a template or a message body.", "请指定模板或消息正文。")]})
        rendered_body = render(body, context, html=html)
        rendered_subject = render(subject, context, field="subject") if subject else None
        entity, record_id = subject_ref if subject_ref else (None, None)
        headers = {k: str(v) for k, v in (headers or {}).items() if k in THREAD_HEADERS and v} if channel == "email" else {}
        row = dict(headers=headers or None, channel=channel, recipient=to.strip(), template_key=template, subject=rendered_subject, body=rendered_body, html=html,
                   entity=entity, record_id=record_id, purpose=purpose, created_at=_now(), actor_id=actor.id if actor else None)
        with write_transaction(self.engine) as conn:
            consented = subject_ref is None or has_consent(conn, *subject_ref, channel, purpose)
            row.update(status=QUEUED if consented else REFUSED,
                       error=None if consented else f"no {channel} consent from {entity}#{record_id}" + (f" for '{purpose}'" if purpose else ""))
            delivery_id = inserted_id(conn.execute(pt.message_delivery.insert().values(**row)))
        if consented:
            job_id = self.jobs.submit(SEND_JOB, {"delivery_id": delivery_id}, actor=actor, dedupe_key=f"message:{delivery_id}")
            with write_transaction(self.engine) as conn:
                conn.execute(pt.message_delivery.update().where(pt.message_delivery.c.id == delivery_id).values(job_id=job_id))
        return self.delivery(delivery_id)

    def delivery(self, delivery_id: int) -> dict:
        with read_transaction(self.engine) as conn:
            return dict(conn.execute(select(pt.message_delivery).where(pt.message_delivery.c.id == delivery_id)).mappings().one())

    def deliveries(self, *, entity: str | None = None, record_id: int | None = None, limit: int = 100) -> list[dict]:
        d = pt.message_delivery
        stmt = select(d).order_by(d.c.id.desc()).limit(limit)
        if entity is not None:
            stmt = stmt.where(d.c.entity == entity, d.c.record_id == record_id)
        with read_transaction(self.engine) as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    # -- the delivery job ---------------------------------------------------------------------------
    def _run_delivery(self, ctx, payload: dict) -> dict:
        d = pt.message_delivery
        delivery_id = int(payload["delivery_id"])
        row = self.delivery(delivery_id)
        if row["status"] in (SENT, LOGGED, REFUSED):
            return {"status": row["status"]}  # already done: a rerun after a crash sends nothing twice
        if row["entity"] is not None:
            with read_transaction(self.engine) as conn:
                consented = has_consent(conn, row["entity"], row["record_id"], row["channel"], row["purpose"])
            if not consented:
                self._update(delivery_id, status=REFUSED, error=f"consent for {row['channel']} withdrawn before sending")
                return {"status": REFUSED}
        wait = self.limiter.hit(f"channel:{row['channel']}")
        if wait is not None:
            self._update(delivery_id, status=DEFERRED, error=f"rate limit: {self.limiter.per_minute} per minute on {row['channel']}")
            raise RetryLater(wait, f"rate limited; retry in {wait:.0f}s")
        self._update(delivery_id, attempts=d.c.attempts + 1)
        if row["channel"] == "in_app":
            create_notification(self.engine, int(row["recipient"]), row["subject"] or "", row["body"])
            self._update(delivery_id, status=SENT, provider="in_app", sent_at=_now(), error=None)
            return {"status": SENT}
        provider = self.providers[row["channel"]]
        message = OutgoingMessage(channel=row["channel"], to=row["recipient"], subject=row["subject"], body=row["body"], html=row["html"],
                                  template=row["template_key"], delivery_id=delivery_id, headers=row.get("headers") or {})
        try:
            ref = provider.send(message)
        except Exception as exc:
            last = ctx.attempt >= self.jobs.require(ctx.job_id)["max_attempts"]
            self._update(delivery_id, status=FAILED if last else QUEUED, provider=provider.name, error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        status = LOGGED if provider.name == "log" else SENT
        self._update(delivery_id, status=status, provider=provider.name, provider_ref=str(ref)[:200], sent_at=_now(), error=None)
        return {"status": status, "ref": ref}

    def _update(self, delivery_id: int, **values: Any) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(pt.message_delivery.update().where(pt.message_delivery.c.id == delivery_id).values(**values))
