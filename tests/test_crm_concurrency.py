"""Concurrency claims of the CRM templates, with real concurrent connections on PostgreSQL: round-robin turns
are never shared, and a breach is recorded once when refreshes race."""
from __future__ import annotations

import collections
import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pytest

from crm_support import crm  # noqa: F401
from crmkit.apps.crm.assignment import next_in_rotation
from crmkit.apps.crm.calendar import load_calendar
from crmkit.apps.crm.sla import TicketClock, ticket_states
from crmkit.apps.crm.tickets import DEFAULT_TARGETS, record_breach
from crmkit.runtime.actor import SYSTEM
from test_crm_sales import add_unit, add_user

pytestmark = pytest.mark.postgres_only


def run_together(n, fn):
    barrier, out, errors = threading.Barrier(n), [], []

    def worker(i):
        barrier.wait()
        try:
            out.append(fn(i))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return out


def test_concurrent_round_robin_hands_out_every_turn_once(crm):
    team = add_unit(crm, "RR")
    reps = [add_user(crm, f"rr{i}", team) for i in range(4)]
    got = run_together(12, lambda i: next_in_rotation(crm.engine, team, "lead"))
    assert collections.Counter(got) == {r: 3 for r in reps}


def test_racing_breach_records_keep_one(crm):
    sh = ZoneInfo("Asia/Shanghai")
    opened = dt.datetime(2026, 3, 2, 9, tzinfo=sh)
    tid = crm.records.create("crm_service.ticket", {"subject": "并发", "opened_at": opened.isoformat(), "sla_checked_at": opened.isoformat()}, SYSTEM)
    ticket = crm.queries.get("crm_service.ticket", tid, SYSTEM)
    now = dt.datetime(2026, 3, 20, 9, tzinfo=sh)
    state = ticket_states(load_calendar(), TicketClock(opened_at=opened), DEFAULT_TARGETS, now)[0]
    assert state.state == "breached"
    results = run_together(6, lambda i: record_breach(crm, ticket, state, now, SYSTEM))
    assert results.count(True) == 1
    assert crm.queries.list("crm_service.sla_breach", SYSTEM, count="exact").total == 1
