"""Demo service agents: users without a password (they cannot sign in) who own the demo tickets, so the per-agent
load report and the assignment rules have people to show. They hold the CRM Service Agent role."""
from __future__ import annotations

from sqlalchemy import select

from crmkit.runtime.db import write_transaction
from crmkit.runtime.org.tables import ab_user, ab_user_role, user_org
from crmkit.runtime.permissions.admin import ensure_role

AGENTS = [("demo_agent_1", "客服", "陈静"), ("demo_agent_2", "客服", "刘洋"), ("demo_agent_3", "客服", "孙丽"), ("demo_agent_4", "客服", "周强")]
ROLE = "CRM Service Agent"


def demo_user(conn, username: str, first: str, last: str, role_id: int, unit_id: int | None = None) -> int:
    """A demo user without a password (it cannot sign in) holding ``role_id``; the existing one if already there."""
    uid = conn.execute(select(ab_user.c.id).where(ab_user.c.username == username)).scalar()
    if uid is None:
        uid = conn.execute(ab_user.insert().values(first_name=first, last_name=last, username=username, email=f"{username}@example.invalid",
                                                   active=True, password=None)).inserted_primary_key[0]
        conn.execute(ab_user_role.insert().values(user_id=uid, role_id=role_id))
        if unit_id is not None:
            conn.execute(user_org.insert().values(user_id=uid, org_unit_id=unit_id))
    return int(uid)


def demo_agents(services) -> list[int]:
    with write_transaction(services.engine) as conn:
        role = ensure_role(conn, ROLE)  # the install made it
        return [demo_user(conn, username, first, last, role) for username, first, last in AGENTS]
