"""Kanban (grouped by a single select) and calendar (by a date) pages over HTTP."""
from __future__ import annotations

import re

from conftest import csrf_from
from crmkit.runtime.actor import SYSTEM

MEMBER = "membership.member"


def add(services, name, mobile, **extra):
    return services.records.create(MEMBER, {"name": name, "mobile": mobile, "joined_on": "2024-03-05", **extra}, SYSTEM)


def test_kanban_groups_by_the_select_and_moves_cards(client, services):
    a = add(services, "看板甲", "13800000001", status="active")
    b = add(services, "看板乙", "13800000002", status="lost")
    html = client.get("/e/membership.member/kanban?by=status").get_data(as_text=True)
    columns = re.findall(r'<ul class="kanban-cards" data-value="([^"]*)">(.*?)</ul>', html, re.S)
    by_value = {v: body for v, body in columns}
    assert "看板甲" in by_value["active"] and "看板乙" in by_value["lost"] and "看板甲" not in by_value["lost"]
    assert 'href="/e/membership.member/kanban"' in client.get("/e/membership.member/").get_data(as_text=True)
    token = csrf_from(html)
    version = services.queries.get(MEMBER, a, SYSTEM)["row_version"]
    resp = client.post("/e/membership.member/kanban/move", data={"csrf_token": token, "record_id": a, "row_version": version,
                                                                 "field": "status", "value": "cancelled"})
    assert resp.status_code == 303
    assert services.queries.get(MEMBER, a, SYSTEM)["status"] == "cancelled"
    # A stale card (its row version is old) is refused; the record keeps the other change.
    stale = client.post("/e/membership.member/kanban/move", data={"csrf_token": token, "record_id": a, "row_version": version,
                                                                  "field": "status", "value": "lost"}, headers={"HX-Request": "true"})
    assert stale.status_code == 409 and services.queries.get(MEMBER, a, SYSTEM)["status"] == "cancelled"
    assert services.queries.get(MEMBER, b, SYSTEM)["status"] == "lost"


def test_calendar_places_records_on_their_day(client, services):
    add(services, "日历甲", "13800000003", joined_on="2024-03-05")
    add(services, "日历乙", "13800000004", joined_on="2024-04-01")
    html = client.get("/e/membership.member/calendar?by=joined_on&month=2024-03").get_data(as_text=True)
    cell = re.search(r'<div class="day-num">5</div>(.*?)</td>', html, re.S).group(1)
    assert "日历甲" in cell and "日历乙" not in html
    assert client.get("/e/membership.member/calendar?month=2024-13").status_code == 400
