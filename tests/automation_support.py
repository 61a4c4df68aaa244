"""Helpers for the automation tests: save a definition, dispatch the outbox, read the run log and messages."""
from __future__ import annotations

import copy

from sqlalchemy import select

from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.storage import platform_tables as pt
from crmkit.runtime.automations.tables import automation_run

MEMBER = "membership.member"


def automation(name: str, trigger: dict, actions: list, *, entity: str = MEMBER, **extra) -> dict:
    body = {"entity": entity, "name": name, "label": {"zh": name, "en": name}, "trigger": trigger, "actions": actions}
    body.update(extra)
    return body


def save(services, *bodies: dict) -> None:
    services.store.save([RawDocument("automation", "membership", copy.deepcopy(b), f"test:{b['name']}") for b in bodies])


def dispatch(services) -> None:
    while services.background.outbox.dispatch():
        pass


def runs(services, key: str | None = None) -> list[dict]:
    with services.engine.connect() as conn:
        stmt = select(automation_run).order_by(automation_run.c.id)
        if key:
            stmt = stmt.where(automation_run.c.automation == key)
        return [dict(r) for r in conn.execute(stmt).mappings()]


def deliveries(services, channel: str | None = None) -> list[dict]:
    d = pt.message_delivery
    with services.engine.connect() as conn:
        stmt = select(d).order_by(d.c.id)
        if channel:
            stmt = stmt.where(d.c.channel == channel)
        return [dict(r) for r in conn.execute(stmt).mappings()]


def member(**overrides) -> dict:
    data = {"name": "王芳", "mobile": "13800138000", "status": "active", "birthday": "1990-05-20", "joined_on": "2026-01-05"}
    data.update(overrides)
    return data
