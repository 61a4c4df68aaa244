"""AutomationService: record events, dates, schedules and buttons → condition → actions, each run claimed once.

Every run is a row of ``crmkit_automation_run``, unique per (automation, record, occurrence) and inserted in its
own transaction **before** any action runs: the occurrence is ``event:<outbox id>`` for record triggers,
``date:<day>`` / ``month:<YYYY-MM>`` for date triggers, ``slot:<minute>`` for schedules and ``manual:<request
id>`` for the button. A re-delivered event, a retried job or a second worker hits the UNIQUE constraint and does
nothing, so no action runs twice (at most once per occurrence; a run whose process died mid-way stays
``running`` and is not repeated).

Actions run with full rights as the automation's ``owner`` (a user name), or as the system actor without one;
the definition, published by a builder, authorizes them. Their writes carry ``request_id =
"automation:<depth>:<hash of the automation>"``, which the record event repeats as ``origin``: an automation
never fires on its own writes, and a chain of automations triggering each other stops at ``MAX_DEPTH``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import replace
from typing import Any, Iterator
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from ..actor import SYSTEM, Actor
from ..audit import record_event
from ..db import inserted_id, read_transaction, write_transaction
from ..errors import PermissionDenied, RecordNotFound, StaleRecord, ValidationFailed
from ..events import Event
from ..i18n_text import text
from ..meta.automations import AutomationDef, is_expression, parse_cron
from ..meta.compile import RawDocument
from ..query.service import MAX_PAGE
from ..records.service import ORIGIN_PREFIX
from ..storage import fab_tables
from ..storage import platform_tables as pt
from .tables import automation_run as ar

log = logging.getLogger(__name__)

MAX_DEPTH = 3
SCHEDULE_JOB, DATES_JOB = "automations.schedule", "automations.dates"
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
TOPIC_TRIGGER = {"record.created": "created", "record.updated": "updated", "record.deleted": "deleted", "workflow.transitioned": "state_entered"}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def origin_tag(a: AutomationDef) -> str:
    return hashlib.sha1(a.key.encode()).hexdigest()[:16]


def parse_origin(payload: dict) -> tuple[int, str]:
    """(depth, automation hash) of the write that produced an event; (0, "") for people's writes."""
    origin = (payload or {}).get("origin") or ""
    if not origin.startswith(ORIGIN_PREFIX):
        return 0, ""
    parts = origin.split(":")
    try:
        return int(parts[1]), parts[2]
    except (IndexError, ValueError):
        return MAX_DEPTH, ""


class UnknownAutomation(RecordNotFound):
    code = "unknown_automation"


class AutomationService:
    def __init__(self, engine: Engine, store, records, queries, messaging, webhooks, jobs, *, timezone: str = "Asia/Shanghai"):
        self.engine, self.store, self.records, self.queries = engine, store, records, queries
        self.messaging, self.webhooks, self.jobs = messaging, webhooks, jobs
        self.tz = ZoneInfo(timezone)

    def register(self, registry, bus) -> None:
        from huey import crontab

        registry.register(SCHEDULE_JOB, lambda ctx, payload: self.run_schedules(_at(payload)))
        registry.register(DATES_JOB, lambda ctx, payload: self.run_dates(_at(payload)))
        registry.periodic(SCHEDULE_JOB, crontab(minute="*"))
        registry.periodic(DATES_JOB, crontab(minute="7"))   # hourly: a day's date triggers fire in its first hour
        bus.subscribe("*", self.on_event)

    # -- definitions ---------------------------------------------------------------------------
    def get(self, key: str) -> AutomationDef:
        a = self.store.catalog().automations.get(key)
        if a is None:
            raise UnknownAutomation(text("There is no automation '{key}'.", "没有名为“{key}”的自动化。", key=key))
        return a

    def for_entity(self, entity_key: str) -> list[AutomationDef]:
        return sorted(self.store.catalog().automations_of(entity_key), key=lambda a: a.name)

    def set_enabled(self, key: str, enabled: bool, actor: Actor) -> None:
        """Flip ``enabled`` in the stored definition: versioned by the metadata store, audited here too."""
        a = self.get(key)
        with read_transaction(self.engine) as conn:
            row = conn.execute(select(pt.document).where(pt.document.c.kind == "automation", pt.document.c.key == key)).mappings().first()
        if row is None:
            raise UnknownAutomation(text("There is no automation '{key}'.", "没有名为“{key}”的自动化。", key=key))
        body = dict(row["body"])
        body["enabled"] = bool(enabled)
        self.store.save([RawDocument("automation", row["app"], body, f"db:automation/{key}")], actor_id=actor.id,
                        comment=("enable" if enabled else "disable") + " automation")
        with write_transaction(self.engine) as conn:
            record_event(conn, category="builder", action="automation_enable" if enabled else "automation_disable", actor_id=actor.id,
                         subject=f"automation:{a.key}", changes={"enabled": bool(enabled)})

    # -- record triggers (outbox subscriber) -------------------------------------------------------
    def on_event(self, event: Event) -> None:
        trigger = TOPIC_TRIGGER.get(event.topic)
        if trigger is None:
            return
        catalog = self.store.catalog()
        depth, source = parse_origin(event.payload)
        for a in catalog.automations_of(event.entity):
            if not a.enabled or a.trigger.type != trigger:
                continue
            if source == origin_tag(a) or depth >= MAX_DEPTH:
                log.info("automation %s skips event %s: its own write or depth %s", a.key, event.id, depth)
                continue
            if trigger == "updated" and a.trigger.fields and not set(a.trigger.fields) & set((event.payload or {}).get("changes") or {}):
                continue
            if trigger == "state_entered" and (event.payload or {}).get("to") != a.trigger.state:
                continue
            self.run_one(a, event.record_id, f"event:{event.id}", now=event.created_at, depth=depth + 1, deleted=trigger == "deleted",
                         event=event)

    # -- date and schedule triggers (periodic jobs, explicit clock) --------------------------------
    def run_dates(self, now: dt.datetime) -> dict:
        done = {}
        for a in self._enabled("date"):
            occurrence = f"month:{self._today(now):%Y-%m}" if a.trigger.match == "month" else f"date:{self._today(now).isoformat()}"
            done[a.key] = sum(self.run_one(a, r["id"], occurrence, now=now) == SUCCEEDED for r in self.matching(a, now))
        return done

    def run_schedules(self, now: dt.datetime) -> dict:
        slot = now.astimezone(self.tz).replace(second=0, microsecond=0)
        done = {}
        for a in self._enabled("schedule"):
            if not parse_cron(a.trigger.cron)(slot.replace(tzinfo=None)):
                continue
            done[a.key] = sum(self.run_one(a, r["id"], f"slot:{slot:%Y-%m-%dT%H:%M}", now=now) == SUCCEEDED for r in self.matching(a, now))
        return done

    def _enabled(self, trigger: str) -> list[AutomationDef]:
        return [a for a in self.store.catalog().automations.values() if a.enabled and a.trigger.type == trigger]

    # -- manual trigger ----------------------------------------------------------------------------
    def run_manual(self, entity_key: str, record_id: int, name: str, actor: Actor, *, request_id: str) -> dict:
        """The button: the user must be able to update the record; the actions then run as the automation's actor."""
        a = self.get(f"{entity_key}:{name}")
        if a.trigger.type != "manual":
            raise ValidationFailed({"automation": [text("'{name}' is not started by a button.", "“{name}”不是通过按钮启动的。", name=name)]})
        if not a.enabled:
            raise ValidationFailed({"automation": [text("'{name}' is disabled.", "“{name}”已停用。", name=name)]})
        catalog = self.store.catalog()
        self.queries.policy.check(actor, catalog.entity(entity_key), "update")
        self.queries.get(entity_key, record_id, actor)  # the user's row scope: RecordNotFound outside it
        status = self.run_one(a, record_id, f"manual:{request_id}"[:100], now=utcnow(), started_by=actor)
        return self.run_for(a.key, record_id, f"manual:{request_id}"[:100]) | {"status": status}

    # -- one run -----------------------------------------------------------------------------------
    def run_one(self, a: AutomationDef, record_id: int, occurrence: str, *, now: dt.datetime, depth: int = 1, deleted: bool = False,
                event: Event | None = None, started_by: Actor | None = None) -> str | None:
        """Check the condition, claim the occurrence, act. Returns the run's status, or None (condition false / claimed before)."""
        try:
            record = self.queries.get(a.entity, record_id, SYSTEM, deleted=deleted)
        except RecordNotFound:
            return None
        if not self.condition_holds(a, record, now):
            return None
        actor = self.actor_for(a)
        run_id = self._claim(a, record_id, occurrence, actor, started_by)
        if run_id is None:
            return None
        origin = f"{ORIGIN_PREFIX}{depth}:{origin_tag(a)}"
        results, status, error = [], SUCCEEDED, None
        try:
            for action in a.actions:
                results.append(self._act(a, action, record, actor, origin, now, event))
                if action.kind == "set":
                    record = self.queries.get(a.entity, record_id, SYSTEM, deleted=deleted)
        except Exception as exc:  # noqa: BLE001 - recorded on the run; the event is not retried (the run is claimed)
            status, error = FAILED, f"action {len(results) + 1} ({a.actions[len(results)].kind}): {_describe(exc)}"[:4000]
            log.warning("automation %s on %s#%s failed: %s", a.key, a.entity, record_id, error)
        with write_transaction(self.engine) as conn:
            conn.execute(ar.update().where(ar.c.id == run_id).values(status=status, result={"actions": results}, error=error, finished_at=utcnow()))
        return status

    def _claim(self, a: AutomationDef, record_id: int, occurrence: str, actor: Actor, started_by: Actor | None) -> int | None:
        try:
            with write_transaction(self.engine) as conn:
                return inserted_id(conn.execute(ar.insert().values(
                    automation=a.key, entity=a.entity, record_id=record_id, occurrence=occurrence, trigger=a.trigger.type, status=RUNNING,
                    actor_id=(started_by or actor).id, started_at=utcnow())))
        except IntegrityError:
            return None

    def actor_for(self, a: AutomationDef) -> Actor:
        if not a.owner:
            return SYSTEM
        with read_transaction(self.engine) as conn:
            uid = conn.execute(select(fab_tables.ab_user.c.id).where(fab_tables.ab_user.c.username == a.owner)).scalar()
        if uid is None:
            return SYSTEM
        return Actor(id=uid, username=a.owner, is_admin=True)

    def condition_holds(self, a: AutomationDef, record: dict, now: dt.datetime) -> bool:
        if not a.condition:
            return True
        from ..expr import ExpressionError, compile_expression

        catalog = self.store.catalog()
        compiled = compile_expression(a.condition, catalog.entity(a.entity), catalog, result="boolean", timezone=str(self.tz))
        try:
            return compiled.evaluate(record, now=now) is True
        except ExpressionError:
            return False

    # -- actions -----------------------------------------------------------------------------------
    def _act(self, a: AutomationDef, action, record: dict, actor: Actor, origin: str, now: dt.datetime, event: Event | None) -> dict:
        o = action.options
        if action.kind == "set":
            values = self._values(a, o, record, now)
            for attempt in range(3):
                try:
                    version = self.records.update(a.entity, record["id"], values, actor, expected_version=record["row_version"], request_id=origin)
                    return {"set": sorted(values), "row_version": version}
                except StaleRecord:
                    if attempt == 2:
                        raise
                    record = self.queries.get(a.entity, record["id"], SYSTEM)
        if action.kind == "create":
            values = self._values(a, o.get("values") or {}, record, now)
            if o.get("link"):
                values[o["link"]] = record["id"]
            new_id = self.records.create(o["entity"], values, actor, request_id=origin)
            return {"created": o["entity"], "id": new_id}
        if action.kind == "message":
            to = self._recipient(o["to"], record)
            if to in (None, ""):  # nobody to send to (no mobile, no owner): nothing to do, and the run log says so
                return {"message": None, "channel": o["channel"], "status": "skipped", "reason": f"no {o['to']}"}
            external = o["channel"] != "in_app"
            row = self.messaging.send(o["channel"], to=str(to), actor=actor if actor.id else None, subject_ref=(a.entity, record["id"]) if external else None,
                                      template=o.get("template"), subject=o.get("subject"), body=None if o.get("template") else o.get("body"),
                                      context={"record": _plain(record), **_plain(record)}, purpose=o.get("purpose"))
            return {"message": row["id"], "channel": o["channel"], "status": row["status"]}
        if action.kind == "webhook":
            ev = event or Event(id=0, topic=f"automation.{a.name}", entity=a.entity, record_id=record["id"], payload={}, created_at=now)
            ev = replace(ev, topic=f"automation.{a.name}")
            row = self.webhooks.deliver_record(o["name"], ev, actor if actor.id else None)
            return {"webhook_delivery": row["id"]}
        if action.kind == "run":
            from ..packages import run_action

            params = {k: record["id"] if v == "$id" else v for k, v in self._values(a, o.get("params") or {}, record, now).items()}
            payload = {**params, "entity": a.entity, "id": record["id"], "record": _plain(record), "automation": a.key}
            result = run_action(self.jobs.services, o["app"], o["action"], actor, payload)
            return {"run": f"{o['app']}:{o['action']}", "result": _plain(result) if isinstance(result, dict) else str(result)[:200]}
        raise ValueError(f"unknown action {action.kind}")

    def _values(self, a: AutomationDef, values, record: dict, now: dt.datetime) -> dict:
        from ..expr import compile_expression

        catalog = self.store.catalog()
        entity = catalog.entity(a.entity)
        out = {}
        for name, value in values.items():
            if is_expression(value):
                v = compile_expression(value["expr"], entity, catalog, timezone=str(self.tz)).evaluate(record, now=now)
                out[name] = v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v
            else:
                out[name] = value
        return out

    @staticmethod
    def _recipient(to: str, record: dict):
        if to == "$owner":
            return record.get("owner_id") or record.get("created_by")
        if to == "$creator":
            return record.get("created_by")
        return record.get(to)

    # -- which records: date rules, schedules and simulate -----------------------------------------
    def matching(self, a: AutomationDef, now: dt.datetime) -> Iterator[dict]:
        """Records the automation applies to at ``now``: its date rule (date triggers) and its condition."""
        flt = None
        today = self._today(now)
        if a.trigger.type == "date" and a.trigger.match == "date":
            flt = {"field": a.trigger.field, "op": "eq", "value": (today - dt.timedelta(days=a.trigger.offset_days)).isoformat()}
            if self.store.catalog().entity(a.entity).field(a.trigger.field).type == "datetime":
                flt = {"field": a.trigger.field, "op": "is_not_empty"}
        for row in self._scan(a.entity, flt):
            if a.trigger.type == "date" and not self._date_matches(a, row.get(a.trigger.field), today):
                continue
            if self.condition_holds(a, row, now):
                yield row

    def simulate(self, key: str, at: dt.datetime | None = None) -> dict:
        """What the automation would act on now (or at ``at``), without acting: nothing is written, no run rows."""
        a = self.get(key)
        now = at or utcnow()
        rows = list(self.matching(a, now))
        due = True
        if a.trigger.type == "schedule":
            due = bool(parse_cron(a.trigger.cron)(now.astimezone(self.tz).replace(second=0, microsecond=0, tzinfo=None)))
        catalog = self.store.catalog()
        entity = catalog.entity(a.entity)
        return {"automation": a.key, "at": now.isoformat(), "due": due,
                "records": [{"id": r["id"], "title": str(r.get(entity.title_field) or f"#{r['id']}")} for r in rows]}

    def _scan(self, entity_key: str, flt) -> Iterator[dict]:
        cursor = None
        while True:
            page = self.queries.list(entity_key, SYSTEM, filter=flt, sort=["id"], cursor=cursor, limit=MAX_PAGE, count="none", labels=False)
            yield from page.rows
            cursor = page.next_cursor
            if not cursor:
                return

    def _today(self, now: dt.datetime) -> dt.date:
        now = now if now.tzinfo else now.replace(tzinfo=dt.timezone.utc)
        return now.astimezone(self.tz).date()

    def _date_matches(self, a: AutomationDef, value, today: dt.date) -> bool:
        d = _as_date(value, self.tz)
        if d is None:
            return False
        t = a.trigger
        if t.match == "month":
            return d.month == today.month
        fire = d + dt.timedelta(days=t.offset_days)
        if t.match == "anniversary":
            return (fire.month, fire.day) == (today.month, today.day)
        return fire == today

    # -- the run log -------------------------------------------------------------------------------
    def runs(self, key: str, *, limit: int = 100) -> list[dict]:
        with read_transaction(self.engine) as conn:
            return [dict(r) for r in conn.execute(select(ar).where(ar.c.automation == key).order_by(ar.c.id.desc()).limit(limit)).mappings()]

    def run_for(self, key: str, record_id: int, occurrence: str) -> dict:
        with read_transaction(self.engine) as conn:
            row = conn.execute(select(ar).where(ar.c.automation == key, ar.c.record_id == record_id, ar.c.occurrence == occurrence)).mappings().first()
        return dict(row) if row else {}


def _at(payload: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(payload["now"]) if payload.get("now") else utcnow()


def _as_date(value, tz) -> dt.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).astimezone(tz).date()
    if isinstance(value, dt.date):
        return value
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return _as_date(parsed, tz) if "T" in str(value) or " " in str(value) else parsed.date()


def _plain(value: Any) -> Any:
    """JSON-safe copy (dates as ISO text) for message contexts, app action payloads and the run log."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _describe(exc: Exception) -> str:
    errors = getattr(exc, "field_errors", None)
    return f"{type(exc).__name__}: {exc}" + (f" {errors}" if errors and str(errors) not in str(exc) else "")


__all__ = ["AutomationService", "MAX_DEPTH", "PermissionDenied", "UnknownAutomation"]
