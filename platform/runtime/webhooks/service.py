"""Outbound webhooks: per entity and event types, owned by a role (or user) whose permissions filter the payload.

The outbox dispatcher hands each record event to ``on_event``; for every matching webhook it stores one
delivery (unique per webhook and event, so a re-dispatched event is not sent twice) with the payload as
the owner may see it (read through the QueryService: hidden fields absent, masked fields masked), and
submits a ``webhooks.deliver`` job. The job signs and POSTs it; a non-2xx answer or a network error is
retried with the jobs' exponential backoff, and every attempt is logged on the delivery.
"""
from __future__ import annotations

import builtins

import datetime as dt
import json
import secrets
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from ..actor import Actor
from ..api.serialize import record_json
from ..audit import record_event
from ..db import inserted_id, read_transaction, write_transaction
from ..errors import PermissionDenied, RecordNotFound, ValidationFailed
from ..events import Event
from ..i18n_text import text
from ..jobs import JobRegistry, JobService
from ..storage import platform_tables as pt
from ..org.tables import ab_role
from .owner import owner_actor
from .signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

DELIVER_JOB = "webhooks.deliver"
EVENT_TYPES = ("record.created", "record.updated", "record.deleted", "record.restored")
TEST_EVENT = "webhook.test"
MAX_ATTEMPTS = 6
TIMEOUT_SECONDS = 10
PENDING, DELIVERED, RETRYING, FAILED = "pending", "delivered", "retrying", "failed"

w, wd = pt.webhook, pt.webhook_delivery


class WebhookFailed(Exception):
    """The receiver did not answer 2xx; the delivery job retries."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class WebhookService:
    def __init__(self, engine: Engine, jobs: JobService):
        self.engine, self.jobs = engine, jobs

    def register(self, registry: JobRegistry, bus) -> None:
        registry.register(DELIVER_JOB, self._deliver, max_attempts=MAX_ATTEMPTS)
        bus.subscribe("*", self.on_event)

    @property
    def services(self):
        return self.jobs.services

    # -- administration -----------------------------------------------------------------------------
    def create(self, data: dict, actor: Actor) -> tuple[dict, str]:
        """Validate and store a webhook; returns it and its signing secret (shown to the admin once)."""
        clean = self._clean(data)
        secret = "whsec_" + secrets.token_urlsafe(32)
        with write_transaction(self.engine) as conn:
            hook_id = inserted_id(conn.execute(w.insert().values(**clean, secret=secret, active=True, created_at=_now(), created_by=actor.id)))
            record_event(conn, category="integration", action="webhook_create", actor_id=actor.id, subject=clean["name"],
                         changes={"webhook_id": hook_id, "url": clean["url"], "entity": clean["entity"], "events": clean["events"],
                                  "owner_role_id": clean["owner_role_id"], "owner_user_id": clean["owner_user_id"]})
        return self.get(hook_id), secret

    def delete(self, hook_id: int, actor: Actor) -> None:
        hook = self.get(hook_id)
        with write_transaction(self.engine) as conn:
            conn.execute(wd.delete().where(wd.c.webhook_id == hook["id"]))
            conn.execute(w.delete().where(w.c.id == hook["id"]))
            record_event(conn, category="integration", action="webhook_delete", actor_id=actor.id, subject=hook["name"],
                         changes={"webhook_id": hook["id"], "url": hook["url"]})

    def get(self, hook_id: Any) -> dict:
        hid = int(hook_id) if str(hook_id).isdigit() and len(str(hook_id)) < 19 else None
        with read_transaction(self.engine) as conn:
            row = None if hid is None else conn.execute(select(w).where(w.c.id == hid)).mappings().first()
        if row is None:
            raise RecordNotFound(text("Webhook #{id} does not exist.", "Webhook #{id} 不存在。", id=hook_id))
        return dict(row)

    def list(self) -> list[dict]:
        with read_transaction(self.engine) as conn:
            return [dict(r) for r in conn.execute(select(w).order_by(w.c.id)).mappings()]

    def deliveries(self, hook_id: int, *, limit: int = 100) -> builtins.list[dict]:
        with read_transaction(self.engine) as conn:
            return [dict(r) for r in conn.execute(select(wd).where(wd.c.webhook_id == hook_id).order_by(wd.c.id.desc()).limit(limit)).mappings()]

    def send_test(self, hook_id: int, actor: Actor) -> dict:
        hook = self.get(hook_id)
        payload = {"event": TEST_EVENT, "webhook_id": hook["id"], "entity": hook["entity"], "sent_at": _now().isoformat(),
                   "message": "This is a test delivery from crmkit. / 这是 crmkit 的测试投递。"}
        with write_transaction(self.engine) as conn:
            did = inserted_id(conn.execute(wd.insert().values(webhook_id=hook["id"], event_id=None, event_type=TEST_EVENT, payload=payload, status=PENDING,
                                                              created_at=_now())))
            record_event(conn, category="integration", action="webhook_test", actor_id=actor.id, subject=hook["name"], changes={"webhook_id": hook["id"]})
        self._submit(did, actor)
        return self.delivery(did)

    def delivery(self, delivery_id: int) -> dict:
        with read_transaction(self.engine) as conn:
            return dict(conn.execute(select(wd).where(wd.c.id == delivery_id)).mappings().one())

    # -- events → deliveries ------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        if event.topic not in EVENT_TYPES:
            return
        with read_transaction(self.engine) as conn:
            hooks = [dict(r) for r in conn.execute(select(w).where(w.c.entity == event.entity, w.c.active.is_(True))).mappings()]
        for hook in hooks:
            if event.topic not in (hook["events"] or []):
                continue
            payload = self._payload(hook, event)
            if payload is None:
                continue
            try:
                with write_transaction(self.engine) as conn:
                    did = inserted_id(conn.execute(wd.insert().values(webhook_id=hook["id"], event_id=event.id, event_type=event.topic, payload=payload,
                                                                      status=PENDING, created_at=_now())))
            except IntegrityError:  # this event was handed to this webhook before (at-least-once dispatch)
                with read_transaction(self.engine) as conn:
                    did = conn.execute(select(wd.c.id).where(wd.c.webhook_id == hook["id"], wd.c.event_id == event.id)).scalar_one()
            self._submit(did, None)

    def deliver_record(self, name: str, event: Event, actor: Actor | None) -> dict:
        """Send one record to the active webhook called ``name`` outside the outbox (an automation's action):
        the payload is filtered by the webhook owner's permissions as usual; returns the delivery row."""
        with read_transaction(self.engine) as conn:
            hook = conn.execute(select(w).where(w.c.name == name, w.c.active.is_(True))).mappings().first()
        if hook is None:
            raise RecordNotFound(text("There is no active webhook named '{name}'.", "没有名为“{name}”的启用中的 Webhook。", name=name))
        payload = self._payload(dict(hook), event)
        if payload is None:
            raise PermissionDenied(text("The webhook's owner may not see this record.", "该 Webhook 的所有者无权查看这条记录。"))
        with write_transaction(self.engine) as conn:
            did = inserted_id(conn.execute(wd.insert().values(webhook_id=hook["id"], event_id=None, event_type=event.topic[:64], payload=payload, status=PENDING,
                                                              created_at=_now())))
        self._submit(did, actor)
        return self.delivery(did)

    def _payload(self, hook: dict, event: Event) -> dict | None:
        """The event as the owner may see it, or None when the owner may not see this record at all."""
        services = self.services
        with read_transaction(self.engine) as conn:
            owner = owner_actor(conn, hook)
        if owner is None:
            return None
        catalog = services.store.catalog()
        entity = catalog.entities.get(event.entity)
        if entity is None or not services.policy.allows(owner, entity, "read"):
            return None
        try:
            row = services.queries.get(event.entity, event.record_id, owner, deleted=event.topic == "record.deleted")
            record = record_json(catalog, entity, row)
            record.pop("_labels", None)
        except RecordNotFound:
            return None  # outside the owner's rows
        except PermissionDenied:
            return None
        return {"event": event.topic, "event_id": event.id, "entity": event.entity, "record_id": event.record_id,
                "occurred_at": event.created_at.isoformat() if event.created_at else None, "record": record,
                "changes": services.queries.visible_changes(event.entity, (event.payload or {}).get("changes") or {}, owner)}

    def _submit(self, delivery_id: int, actor: Actor | None) -> None:
        job_id = self.jobs.submit(DELIVER_JOB, {"delivery_id": delivery_id}, actor=actor, dedupe_key=f"webhook:{delivery_id}")
        with write_transaction(self.engine) as conn:
            conn.execute(wd.update().where(wd.c.id == delivery_id).values(job_id=job_id))

    # -- the delivery job ---------------------------------------------------------------------------
    def _deliver(self, ctx, payload: dict) -> dict:
        delivery = self.delivery(int(payload["delivery_id"]))
        if delivery["status"] == DELIVERED:
            return {"status": DELIVERED}
        with read_transaction(self.engine) as conn:
            hook = conn.execute(select(w).where(w.c.id == delivery["webhook_id"])).mappings().first()
        if hook is None or not hook["active"]:
            self._update(delivery["id"], status=FAILED, error="the webhook was deleted or disabled")
            return {"status": FAILED}
        body = json.dumps({**delivery["payload"], "delivery_id": delivery["id"]}, ensure_ascii=False, separators=(",", ":"), default=str).encode()
        ts = int(time.time())
        req = urllib.request.Request(hook["url"], data=body, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8", "User-Agent": "crmkit-webhooks/1",
            "X-Crmkit-Event": delivery["event_type"], "X-Crmkit-Delivery": str(delivery["id"]),
            TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(hook["secret"], ts, body)})
        code, answer, error = None, "", None
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_SECONDS) as resp:  # noqa: S310 - admin-configured http(s) URL
                code, answer = resp.status, resp.read(1000).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            code, answer = exc.code, exc.read(1000).decode("utf-8", "replace")
            error = f"HTTP {exc.code}"
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempts = wd.c.attempts + 1
        if error is None and code is not None and 200 <= code < 300:
            self._update(delivery["id"], status=DELIVERED, attempts=attempts, response_code=code, response_body=answer[:1000], error=None, delivered_at=_now())
            return {"status": DELIVERED, "code": code}
        last = ctx.attempt >= MAX_ATTEMPTS
        self._update(delivery["id"], status=FAILED if last else RETRYING, attempts=attempts, response_code=code, response_body=answer[:1000],
                     error=(error or f"HTTP {code}")[:2000])
        raise WebhookFailed(f"{hook['url']} answered {error or code}")

    def _update(self, delivery_id: int, **values) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(wd.update().where(wd.c.id == delivery_id).values(**values))

    # -- validation ---------------------------------------------------------------------------------
    def _clean(self, data: dict) -> dict:
        errors: dict[str, list] = {}
        name = (data.get("name") or "").strip()
        if not 0 < len(name) <= 100:
            errors["name"] = [text("Give the webhook a name (1-100 characters).", "请填写名称（1-100 个字符）。")]
        url = (data.get("url") or "").strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 1000 or parts.username or parts.password:
            errors["url"] = [text("Give an http:// or https:// address without a user name or password.", "请填写 http:// 或 https:// 地址，不要包含用户名或密码。")]
        entity = data.get("entity") or ""
        if entity not in self.services.store.catalog().entities:
            errors["entity"] = [text("Choose an entity.", "请选择实体。")]
        events = data.get("events") or []
        if isinstance(events, str):
            events = [events]
        if not events or any(e not in EVENT_TYPES for e in events):
            errors["events"] = [text("Choose one or more events: {e}.", "请选择一个或多个事件：{e}。", e=", ".join(EVENT_TYPES))]
        raw_role, raw_user = data.get("owner_role_id"), data.get("owner_user_id")
        role_id = int(raw_role) if raw_role and isinstance(raw_role, (int, str)) and str(raw_role).isdigit() else None
        user_id = int(raw_user) if raw_user and isinstance(raw_user, (int, str)) and str(raw_user).isdigit() else None
        if (role_id is None) == (user_id is None):
            errors["owner_role_id"] = [text("Choose the role (or user) whose permissions filter the payload.", "请选择角色（或用户），按其权限过滤推送内容。")]
        elif role_id is not None:
            with read_transaction(self.engine) as conn:
                if conn.execute(select(ab_role.c.id).where(ab_role.c.id == role_id)).first() is None:
                    errors["owner_role_id"] = [text("That role does not exist.", "该角色不存在。")]
        if errors:
            raise ValidationFailed(errors)
        return dict(name=name, url=url, entity=entity, events=[e for e in EVENT_TYPES if e in events], owner_role_id=role_id, owner_user_id=user_id)
