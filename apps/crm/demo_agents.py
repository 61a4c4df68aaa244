"""Demo service agents: users without a password (they cannot sign in) who own the demo tickets, so the per-agent
load report and the assignment rules have people to show. They get the CRM Service Agent role when it exists."""
from __future__ import annotations

from sqlalchemy import select

from crmkit.runtime.db import write_transaction
from crmkit.runtime.org.tables import ab_role, ab_user, ab_user_role

AGENTS = [("demo_agent_1", "客服", "陈静"), ("demo_agent_2", "客服", "刘洋"), ("demo_agent_3", "客服", "孙丽"), ("demo_agent_4", "客服", "周强")]
ROLE = "CRM Service Agent"


def demo_agents(services) -> list[int]:
    ids = []
    with write_transaction(services.engine) as conn:
        role = conn.execute(select(ab_role.c.id).where(ab_role.c.name == ROLE)).scalar()
        for username, first, last in AGENTS:
            uid = conn.execute(select(ab_user.c.id).where(ab_user.c.username == username)).scalar()
            if uid is None:
                uid = conn.execute(ab_user.insert().values(first_name=first, last_name=last, username=username, email=f"{username}@example.invalid",
                                                           active=True, password=None)).inserted_primary_key[0]
                if role is not None:
                    conn.execute(ab_user_role.insert().values(user_id=uid, role_id=role))
            ids.append(int(uid))
    return ids
