"""Assignment: round robin within a team (an org unit), by region, or to the least-loaded member of a group.

The round-robin position is a gap-free counter per team in the platform's sequence table, advanced in the
caller's transaction, so concurrent assignments never hand out the same turn twice.
"""
from __future__ import annotations

from sqlalchemy import func, select

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.db import write_transaction
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.i18n_text import text
from crmkit.runtime.org.tables import ab_user, user_org
from crmkit.runtime.records.service import next_sequence
from crmkit.runtime.storage import platform_tables as pt

from .calendar import app_settings


def team_members(conn, team_id: int) -> list[int]:
    """Active users whose org unit is ``team_id``, in id order (the round-robin order)."""
    u = ab_user
    q = select(user_org.c.user_id).join(u, u.c.id == user_org.c.user_id).where(user_org.c.org_unit_id == team_id, u.c.active.is_(True))
    return [r[0] for r in conn.execute(q.order_by(user_org.c.user_id))]


def _no_members(team_id):
    return ValidationFailed({"team": [text("Team #{id} has no active members to assign to.", "团队 #{id} 没有可分配的在职成员。", id=team_id)]})


def next_in_rotation(engine, team_id: int, scope: str) -> int:
    """The next member of the team in turn for ``scope`` (e.g. 'lead')."""
    with write_transaction(engine) as conn:
        members = team_members(conn, team_id)
        if not members:
            raise _no_members(team_id)
        turn = next_sequence(conn, f"crm.rotation.{scope}.{team_id}", 1)
        return members[(turn - 1) % len(members)]


def least_loaded(services, entity_key: str, team_id: int, *, user_field: str, open_filter: dict, exclude=()) -> int:
    """The team member with the fewest open records (ties: the lower user id); ``exclude`` leaves users out
    (an escalation passes the agent who let the ticket breach)."""
    catalog = services.store.catalog()
    table = services.queries.table_cache.tables(catalog)[entity_key]
    with services.engine.connect() as conn:
        members = [m for m in team_members(conn, team_id) if m not in set(exclude)]
        if not members:
            raise _no_members(team_id)
        field, values = open_filter["field"], open_filter["value"]
        counts = dict(conn.execute(select(table.c[user_field], func.count()).where(
            table.c[user_field].in_(members), table.c.deleted_at.is_(None), table.c[field].in_(values)).group_by(table.c[user_field])).all())
    return min(members, key=lambda m: (counts.get(m, 0), m))


def team_by_code(engine, code: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(select(pt.org_unit.c.id).where(pt.org_unit.c.code == code)).scalar()


def assign_lead(services, lead_id: int, *, team_id: int | None = None, actor=SYSTEM) -> int:
    """Give a lead to the next rep in turn: in ``team_id``, else the team configured for the lead's region
    (settings ``region_teams``: region → org unit code), else the lead's own team. Returns the user id."""
    lead = services.queries.get("crm_sales.lead", lead_id, actor)
    if team_id is None and lead.get("region"):
        code = app_settings().get("region_teams", {}).get(lead["region"])
        team_id = team_by_code(services.engine, code) if code else None
    team_id = team_id or lead.get("team")
    if not team_id:
        raise ValidationFailed({"team": [text("Choose a sales team for this lead first.", "请先为这条线索选择销售团队。")]})
    user = next_in_rotation(services.engine, team_id, "lead")
    services.records.update("crm_sales.lead", lead_id, {"owner": user, "team": team_id}, actor, expected_version=lead["row_version"])
    return user


OPEN_TICKETS = {"field": "status", "value": ["new", "open", "waiting_on_customer"]}


def assign_ticket(services, ticket_id: int, *, strategy: str = "least_loaded", actor=SYSTEM) -> int:
    """Route a ticket to a group by rule (settings ``ticket_routes``: category → org unit code; complaints may have
    their own group), then pick an agent by ``strategy`` ('least_loaded' or 'round_robin')."""
    ticket = services.queries.get("crm_service.ticket", ticket_id, actor)
    routes = app_settings().get("ticket_routes", {})
    code = routes.get(f"kind:{ticket['kind']}") or routes.get(ticket.get("category") or "") or routes.get("*")
    team_id = (team_by_code(services.engine, code) if code else None) or ticket.get("team")
    if not team_id:
        raise ValidationFailed({"team": [text("No service group matches this ticket; choose one.", "没有匹配此工单的服务组，请手动选择。")]})
    if strategy == "round_robin":
        user = next_in_rotation(services.engine, team_id, "ticket")
    else:
        user = least_loaded(services, "crm_service.ticket", team_id, user_field="assignee", open_filter=OPEN_TICKETS)
    services.records.update("crm_service.ticket", ticket_id, {"assignee": user, "team": team_id}, actor, expected_version=ticket["row_version"])
    return user
