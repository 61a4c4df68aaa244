"""Shared building blocks for the workflow tests: reviewer/manager users for the join-application workflow,
actors resolved the way a request resolves them, and direct reads of the workflow tables."""
from __future__ import annotations

from sqlalchemy import func, select

from crmkit.runtime.actor import Actor
from crmkit.runtime.org.grants import resolve_grants
from crmkit.runtime.storage import platform_tables as pt
from crmkit.runtime.workflow.tables import approval_request, approval_task, workflow_history

from org_support import PASSWORD, add_role, add_user  # noqa: F401

APPLICATIONS = "membership.application"
APP_PERMS = [(a, "entity:membership.application") for a in ("read", "create", "update")]
MEMBER_READ = [("read", "entity:membership.member")]


def applicant(**overrides) -> dict:
    data = {"name": "李娜", "mobile": "13900139000", "source": "online", "birthday": "1990-05-01"}
    data.update(overrides)
    return data


def actor_of(services, user_id: int, username: str) -> Actor:
    with services.engine.connect() as conn:
        g = resolve_grants(conn, user_id)
    return Actor(id=user_id, username=username, is_admin="Admin" in g.role_names, permissions=g.permissions,
                 org_unit_id=g.org_unit_id, role_ids=g.role_ids)


def staff(app) -> dict[str, int]:
    """reviewer (Membership Reviewer), boss1/boss2 (Membership Manager), clerk (may create applications only)."""
    add_role(app, "Membership Reviewer", APP_PERMS + MEMBER_READ)
    add_role(app, "Membership Manager", APP_PERMS + MEMBER_READ)
    add_role(app, "Clerk", APP_PERMS)
    return {"reviewer": add_user(app, "reviewer", ["Membership Reviewer"]), "boss1": add_user(app, "boss1", ["Membership Manager"]),
            "boss2": add_user(app, "boss2", ["Membership Manager"]), "clerk": add_user(app, "clerk", ["Clerk"])}


def actors(services, ids: dict[str, int]) -> dict[str, Actor]:
    return {name: actor_of(services, uid, name) for name, uid in ids.items()}


def count(services, table, *where) -> int:
    with services.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def history_rows(services, entity: str, record_id: int) -> list[dict]:
    h = workflow_history
    with services.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(h).where(h.c.entity == entity, h.c.record_id == record_id).order_by(h.c.id))]


def audit_actions(services, entity: str, record_id: int) -> list[str]:
    a = pt.audit
    with services.engine.connect() as conn:
        return list(conn.execute(select(a.c.action).where(a.c.entity == entity, a.c.record_id == record_id).order_by(a.c.id)).scalars())


def outbox_topics(services, entity: str, record_id: int) -> list[str]:
    o = pt.outbox
    with services.engine.connect() as conn:
        return list(conn.execute(select(o.c.topic).where(o.c.entity == entity, o.c.record_id == record_id).order_by(o.c.id)).scalars())


def pending_tasks(services, request_id: int) -> list[dict]:
    t = approval_task
    with services.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(t).where(t.c.request_id == request_id, t.c.status == "pending").order_by(t.c.id))]


def request_status(services, request_id: int) -> str:
    with services.engine.connect() as conn:
        return conn.execute(select(approval_request.c.status).where(approval_request.c.id == request_id)).scalar_one()


def state_of(services, entity: str, record_id: int) -> str | None:
    table = services.records.table_cache.tables(services.store.catalog())[entity]
    with services.engine.connect() as conn:
        return conn.execute(select(table.c.workflow_state).where(table.c.id == record_id)).scalar_one()
