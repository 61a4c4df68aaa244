"""SLA warnings and escalation: the app actions the service automations run (``service/automations/*.json``).

Who hears about a ticket: its assignee (the at-risk automation's built-in message); for an unassigned ticket at
risk, or any breach, the service managers — the org managers of the ticket's group (the nearest unit up its
path that has managers), else the holders of the manager role (settings ``sla_escalation.manager_role``) placed
in that path, else every holder of the role. A breach also reassigns the ticket by ``sla_escalation.reassign``:
``least_loaded`` (another agent of the group with the fewest open tickets), ``manager`` (the first service
manager) or ``none``. The automation engine claims each run once per event, so one breach escalates once.
"""
from __future__ import annotations

from sqlalchemy import select

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import StaleRecord, ValidationFailed
from crmkit.runtime.i18n_text import text
from crmkit.runtime.org.tables import ab_user, user_org
from crmkit.runtime.storage import platform_tables as pt
from crmkit.runtime.workflow.people import users_with_role
from crmkit.runtime.workflow.tables import org_unit_manager

from .assignment import OPEN_TICKETS, least_loaded
from .calendar import app_settings
from .sla import DONE_STATUSES

TICKET = "crm_service.ticket"
REASSIGN_RULES = ("least_loaded", "manager", "none")
TARGET_WORDS = {"first_response": "首次响应 / first response", "resolution": "解决 / resolution"}


def escalation_settings() -> dict:
    cfg = {"reassign": "least_loaded", "manager_role": "CRM Service Manager", **app_settings().get("sla_escalation", {})}
    if cfg["reassign"] not in REASSIGN_RULES:
        raise ValidationFailed({"sla_escalation": [text("sla_escalation.reassign must be one of {rules}, not '{got}'.",
                                                        "sla_escalation.reassign 须为 {rules} 之一，而不是“{got}”。",
                                                        rules=", ".join(REASSIGN_RULES), got=cfg["reassign"])]})
    return cfg


def _unit_chain(conn, team_id: int | None) -> list[int]:
    """The team and its ancestors, nearest first."""
    if not team_id:
        return []
    path = conn.execute(select(pt.org_unit.c.path).where(pt.org_unit.c.id == team_id)).scalar() or ""
    chain = [int(p) for p in path.strip("/").split("/") if p.isdigit()]
    if team_id not in chain:
        chain.append(team_id)
    return list(reversed(chain))


def _active(conn, ids) -> list[int]:
    ids = sorted(set(ids))
    if not ids:
        return []
    return sorted(conn.execute(select(ab_user.c.id).where(ab_user.c.id.in_(ids), ab_user.c.active.is_(True))).scalars())


def service_managers(conn, team_id: int | None, role: str) -> list[int]:
    chain = _unit_chain(conn, team_id)
    for unit in chain:
        found = _active(conn, conn.execute(select(org_unit_manager.c.user_id).where(org_unit_manager.c.org_unit_id == unit)).scalars())
        if found:
            return found
    holders = users_with_role(conn, role)
    if chain and holders:
        placed = conn.execute(select(user_org.c.user_id).where(user_org.c.user_id.in_(holders), user_org.c.org_unit_id.in_(chain))).scalars().all()
        if placed:
            return sorted(set(placed))
    return holders


def _context(ticket: dict, **extra) -> dict:
    keep = ("number", "subject", "priority", "status", "sla_state", "requester_name")
    return {**{k: ticket.get(k) for k in keep},
            "first_response_due": _iso(ticket.get("first_response_due")), "resolution_due": _iso(ticket.get("resolution_due")), **extra}


def _iso(value) -> str:
    if value in (None, ""):
        return "—"  # e.g. a paused ticket has no due time
    return value.isoformat(timespec="minutes") if hasattr(value, "isoformat") else str(value)


def notify(services, user_ids, subject: str, body: str, context: dict) -> list[int]:
    """One in-app message per user through the messaging service; returns the delivery ids."""
    return [services.messaging.send("in_app", to=str(uid), actor=None, subject=subject, body=body, context=context)["id"] for uid in user_ids]


def warn_managers_action(services, actor, payload: dict) -> dict:
    """``sla.warn_managers``: a ticket is at risk — tell the service managers of its group (with
    ``only_unassigned``, only when nobody is assigned: the assignee has had the built-in message)."""
    ticket = services.queries.get(TICKET, int(payload["id"]), SYSTEM)
    if payload.get("only_unassigned") and ticket.get("assignee"):
        return {"status": "skipped", "reason": "assigned"}
    with services.engine.connect() as conn:
        managers = service_managers(conn, ticket.get("team"), escalation_settings()["manager_role"])
    sent = notify(services, managers, "工单即将超时（未分配）/ Unassigned ticket at risk",
                  "工单 {{ number }}「{{ subject }}」尚未分配，SLA 即将超时（解决时限 {{ resolution_due }}）。"
                  " / Ticket {{ number }} \"{{ subject }}\" is unassigned and close to its SLA (resolution due {{ resolution_due }}).",
                  _context(ticket))
    return {"notified": managers, "deliveries": sent}


def pick_agent(services, ticket: dict, rule: str, managers: list[int]) -> int | None:
    """Who takes a breached ticket, or None to leave it where it is."""
    if rule == "manager":
        choice = managers[0] if managers else None
    elif rule == "least_loaded" and ticket.get("team"):
        try:
            choice = least_loaded(services, TICKET, ticket["team"], user_field="assignee", open_filter=OPEN_TICKETS,
                                  exclude=[ticket["assignee"]] if ticket.get("assignee") else [])
        except ValidationFailed:  # nobody else in the group: the managers still hear about it
            choice = None
    else:
        choice = None
    return None if choice == ticket.get("assignee") else choice


def _reassign(services, ticket_id: int, rule: str, managers: list[int]) -> tuple[dict, int | None]:
    for attempt in range(3):
        ticket = services.queries.get(TICKET, ticket_id, SYSTEM)
        if ticket["status"] in DONE_STATUSES:
            return ticket, None
        new = pick_agent(services, ticket, rule, managers)
        if new is None:
            return ticket, None
        try:
            services.records.update(TICKET, ticket_id, {"assignee": new}, SYSTEM, expected_version=ticket["row_version"])
        except StaleRecord:  # the refresh job or a person wrote meanwhile: choose again on the fresh row
            if attempt == 2:
                raise
            continue
        return services.queries.get(TICKET, ticket_id, SYSTEM), new
    return services.queries.get(TICKET, ticket_id, SYSTEM), None


def escalate_action(services, actor, payload: dict) -> dict:
    """``sla.escalate`` on a new ``crm_service.sla_breach``: reassign the ticket by the configured rule, then tell
    the service managers (and the new assignee)."""
    breach = payload["record"]
    cfg = escalation_settings()
    before = services.queries.get(TICKET, int(breach["ticket"]), SYSTEM)
    with services.engine.connect() as conn:
        managers = service_managers(conn, before.get("team"), cfg["manager_role"])
    ticket, new = _reassign(services, before["id"], cfg["reassign"], managers)
    ctx = _context(ticket, target=TARGET_WORDS.get(breach.get("target"), breach.get("target")), due_at=_iso(breach.get("due_at")))
    sent = notify(services, managers, "SLA 已超时 / SLA breached",
                  "工单 {{ number }}「{{ subject }}」{{ target }}已超时（时限 {{ due_at }}）。"
                  " / Ticket {{ number }} \"{{ subject }}\" breached its {{ target }} target (due {{ due_at }}).", ctx)
    if new is not None and new not in managers:
        sent += notify(services, [new], "超时工单已转给你 / A breached ticket is now yours",
                       "工单 {{ number }}「{{ subject }}」已超时，现由你处理。 / Ticket {{ number }} \"{{ subject }}\" breached its SLA and is now assigned to you.", ctx)
    return {"managers": managers, "previous_assignee": before.get("assignee"), "reassigned_to": new, "deliveries": sent}
