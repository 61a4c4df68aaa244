"""Contract-end reminders: a follow-up task in the communication log for each formal merchant whose contract ends
within the window, once per merchant and contract end (so a daily job does not repeat itself)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from crmkit.runtime.actor import Actor

MARK = "合同到期提醒"


def contract_reminders(services, actor: Actor, *, today: dt.date | None = None, days: int = 30) -> int:
    today = today or dt.date.today()
    tables = services.records.table_cache.tables(services.store.catalog())
    m, log = tables["alliance.merchant"], tables["alliance.contact_log"]
    with services.engine.connect() as c:
        due = c.execute(select(m.c.id, m.c.name, m.c.contract_end).where(
            m.c.deleted_at.is_(None), m.c.workflow_state == "formal", m.c.contract_end.is_not(None),
            m.c.contract_end >= today, m.c.contract_end <= today + dt.timedelta(days=days))).all()
        done = {(r.merchant, r.follow_up_task) for r in c.execute(select(log.c.merchant, log.c.follow_up_task).where(
            log.c.deleted_at.is_(None), log.c.summary == MARK))}
    made = 0
    for row in due:
        task = f"续约洽谈 Renewal talks (contract ends {row.contract_end.isoformat()})"
        if (row.id, task) in done:
            continue
        services.records.create("alliance.contact_log", {"merchant": row.id, "kind": "call", "happened_on": today.isoformat(), "summary": MARK,
                                                         "follow_up_on": today.isoformat(), "follow_up_task": task}, actor)
        made += 1
    return made
