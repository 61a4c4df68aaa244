"""Shared pieces for the joining and card tests: staff with the template's own roles (created at install), applications
moved through review and approval, and direct reads of the card pool and card history."""
from __future__ import annotations

from sqlalchemy import select

from crmkit.apps.membership.card_pool import card_pool
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.org.service import OrgService
from crmkit.runtime.org.tables import ab_role

from org_support import add_user
from workflow_support import APPLICATIONS, actor_of, pending_tasks

MEMBERS = "membership.member"


def people(app, services) -> dict:
    """front (Front Desk), reviewer, boss (Membership Manager), auditor, marketer, with the roles install created."""
    ids = {"front": add_user(app, "front", ["Front Desk"]), "reviewer": add_user(app, "reviewer", ["Membership Reviewer"]),
           "boss": add_user(app, "boss", ["Membership Manager"]), "auditor": add_user(app, "auditor", ["Auditor"]),
           "marketer": add_user(app, "marketer", ["Marketing"])}
    return {name: actor_of(services, uid, name) for name, uid in ids.items()}


def approve(services, rid: int, reviewer, boss) -> None:
    """submitted → under_review → approve (opens the approval) → the manager approves."""
    services.workflows.transition(APPLICATIONS, rid, "start_review", reviewer)
    req = services.workflows.transition(APPLICATIONS, rid, "approve", reviewer).pending_approval
    task = [t for t in pending_tasks(services, req) if t["assignee_id"] == boss.id][0]
    services.workflows.decide(task["id"], "approve", boss)


def application(services, rid: int) -> dict:
    return services.queries.get(APPLICATIONS, rid, SYSTEM)


def member_of(services, rid: int) -> dict:
    return services.queries.get(MEMBERS, application(services, rid)["member"], SYSTEM)


def pool_rows(services) -> list[dict]:
    with services.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(card_pool).order_by(card_pool.c.id))]


def store_unit_user(app, services, username: str, role: str, unit_id: int):
    uid = add_user(app, username, [role])
    with services.engine.connect() as conn:
        role_id = conn.execute(select(ab_role.c.id).where(ab_role.c.name == role)).scalar_one()
    OrgService(services.engine).assign_user(SYSTEM, uid, org_unit_id=unit_id, role_ids=[role_id])
    return actor_of(services, uid, username)
