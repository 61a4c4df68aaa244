"""Ticket rules that metadata cannot express: SLA clock and state on every write, complaint closure rules,
and the periodic refresh that moves tickets to at-risk / breached and records each breach once."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, or_, select

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import StaleRecord, ValidationFailed
from crmkit.runtime.i18n_text import text

from .calendar import app_settings, load_calendar
from .sla import DONE_STATUSES, TicketClock, Targets, overall, pause_transition, ticket_states

TICKET, POLICY, BREACH = "crm_service.ticket", "crm_service.sla_policy", "crm_service.sla_breach"
DEFAULT_TARGETS = Targets(first_response=8 * 60, resolution=5 * 8 * 60)  # when no policy matches: one day / one week
REQUIRED_FOR_COMPLAINT = ("root_cause", "follow_up")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def targets_for(write_or_conn, tables, priority: str | None, category: str | None) -> Targets:
    """The active policy for priority × category; a policy without a category covers every category."""
    conn = write_or_conn
    t = tables[POLICY]
    rows = conn.execute(select(t.c.category, t.c.first_response_minutes, t.c.resolution_minutes)
                        .where(t.c.deleted_at.is_(None), t.c.active.is_(True), t.c.priority == priority,
                               or_(t.c.category == category, t.c.category.is_(None)))).all()
    rows.sort(key=lambda r: r.category is None)  # the specific category first
    return Targets(rows[0].first_response_minutes, rows[0].resolution_minutes) if rows else DEFAULT_TARGETS


def clock_of(row) -> TicketClock:
    return TicketClock(opened_at=row.get("opened_at"), paused_minutes=row.get("paused_minutes") or 0, paused_since=row.get("paused_since"),
                       first_responded_at=row.get("first_responded_at"), resolved_at=row.get("resolved_at"))


def ticket_validator(write) -> dict:
    """Keep the SLA fields right on every ticket write; a complaint needs root cause and follow-up to be resolved."""
    v = write.values
    now = v.get("sla_checked_at") or utcnow()  # the refresh job sends its clock; a user write uses the real time
    v["sla_checked_at"] = now
    errors: dict[str, list] = {}
    new_status = write.get("status") or "new"
    old_status = None if write.creating else write.current.get("status")
    if write.get("kind") == "complaint" and new_status in DONE_STATUSES:
        for name in REQUIRED_FOR_COMPLAINT:
            if not (write.get(name) or "").strip():
                errors[name] = [text("A complaint needs this before it is resolved.", "投诉工单在解决前必须填写此项。")]
    if "satisfaction" in v or "satisfaction_comment" in v:
        if write.get("status") not in DONE_STATUSES and v.get("satisfaction") is not None:
            errors["satisfaction"] = [text("A ticket is rated after it is resolved.", "工单解决后才能评价。")]
        elif not write.creating and write.current.get("satisfaction") is not None and v.get("satisfaction", write.current["satisfaction"]) != write.current["satisfaction"]:
            errors["satisfaction"] = [text("This ticket has already been rated.", "该工单已评价过。")]
    if errors:
        return errors
    if write.creating and not v.get("opened_at"):
        v["opened_at"] = now
    if new_status != "new" and not write.get("first_responded_at"):
        v["first_responded_at"] = now
    if new_status in DONE_STATUSES and not write.get("resolved_at"):
        v["resolved_at"] = now
    if new_status not in DONE_STATUSES and write.get("resolved_at") and old_status in DONE_STATUSES:
        v["resolved_at"] = None  # reopened: the resolution clock runs again
    cal = load_calendar()
    clock = clock_of({**(write.current or {}), **v})
    clock = pause_transition(cal, clock, old_status if not write.creating else None, new_status, now)
    v["paused_since"], v["paused_minutes"] = clock.paused_since, clock.paused_minutes
    states = ticket_states(cal, clock, targets_for(write.conn, write.tables, write.get("priority"), write.get("category")), now,
                           at_risk_ratio=float(app_settings().get("sla_at_risk_ratio", 0.8)))
    v["first_response_due"], v["resolution_due"] = states[0].due, states[1].due
    v["sla_state"] = overall(states)
    # the business minutes each target took, stored so reports can take medians and percentiles of them
    v["first_response_minutes"] = states[0].elapsed if clock.first_responded_at or clock.resolved_at else None
    v["resolution_minutes"] = states[1].elapsed if clock.resolved_at else None
    return {}


def refresh_sla(services, now: dt.datetime | None = None, *, actor=SYSTEM) -> dict:
    """Recompute every live ticket's SLA state as of ``now`` and record each breach once (idempotent: a breach
    has a unique key per ticket and target, and re-running finds it)."""
    now = now or utcnow()
    catalog = services.store.catalog()
    if TICKET not in catalog.entities:
        return {"refreshed": 0, "breaches": 0}
    cal = load_calendar()
    refreshed = breaches = 0
    live = or_(~services.queries.table_cache.tables(catalog)[TICKET].c.status.in_(sorted(DONE_STATUSES)),
               services.queries.table_cache.tables(catalog)[TICKET].c.sla_state == "breached")
    table = services.queries.table_cache.tables(catalog)[TICKET]
    with services.engine.connect() as conn:
        ids = [r.id for r in conn.execute(select(table.c.id).where(table.c.deleted_at.is_(None), and_(live)).order_by(table.c.id))]
    for tid in ids:
        row = services.queries.get(TICKET, tid, actor)
        if row["status"] not in DONE_STATUSES:
            try:
                services.records.update(TICKET, tid, {"sla_checked_at": now.isoformat()}, actor, expected_version=row["row_version"])
            except StaleRecord:
                pass  # changed meanwhile (by a person or another refresh): that write computed its SLA state
            row = services.queries.get(TICKET, tid, actor)
            refreshed += 1
        with services.engine.connect() as conn:
            targets = targets_for(conn, services.queries.table_cache.tables(catalog), row["priority"], row["category"])
        for st in ticket_states(cal, clock_of(row), targets, now):
            if st.state == "breached" and record_breach(services, row, st, now, actor):
                breaches += 1
    return {"refreshed": refreshed, "breaches": breaches}


def record_breach(services, ticket: dict, state, now: dt.datetime, actor) -> bool:
    key = f"{ticket['id']}:{state.name}"
    if services.queries.list(BREACH, actor, filter={"field": "key", "op": "eq", "value": key}, limit=1, count="none", labels=False).rows:
        return False
    try:
        services.records.create(BREACH, {"key": key, "ticket": ticket["id"], "target": state.name,
                                         "due_at": state.due.isoformat() if state.due else None, "breached_at": now.isoformat()}, actor)
    except ValidationFailed as exc:  # a concurrent refresh recorded it first (the key is unique)
        if "key" in exc.field_errors:
            return False
        raise
    return True


def refresh_job(ctx, payload: dict) -> dict:
    return refresh_sla(ctx.services)
