"""REST API lists: filter trees, sort, search, fields, keyset cursors and count modes."""
from __future__ import annotations

import datetime as dt
import decimal

import pytest

from api_support import MEMBERS, assert_error, filter_param, token_client
from crmkit.runtime.actor import SYSTEM


@pytest.fixture
def api(app, api_token):
    """A client authenticated as the admin user with a JWT."""
    return token_client(app, api_token)

SEED = [
    # name, mobile, joined_on, status, channel, spent, email, tags
    ("张伟", "13800000001", "2023-01-05", "active", "store", "120.00", "zw@example.com", ["高价值"]),
    ("李娜", "13800000002", "2023-02-11", "active", "online", "80.50", None, ["新客"]),
    ("王芳", "13800000003", "2023-03-20", "lost", "store", "0.00", None, []),
    ("刘洋", "13800000004", "2023-04-02", "active", "referral", "560.00", "ly@example.com", ["高价值", "生日月"]),
    ("陈静", "13800000005", "2023-05-17", "cancelled", "purchase", "33.30", None, []),
    ("杨磊", "13800000006", "2023-06-30", "active", "online", "999.99", None, ["沉睡"]),
    ("赵敏", "13800000007", "2023-07-04", "active", "store", "45.00", "zm@example.com", []),
    ("黄强", "13800000008", "2023-08-08", "lost", "online", "310.00", None, ["新客"]),
    ("周杰", "13800000009", "2023-09-09", "active", "store", "75.25", None, []),
    ("吴丽", "13800000010", "2023-10-10", "active", "referral", "210.00", None, ["高价值"]),
    ("李雷", "13800000011", "2023-10-10", "active", "store", "210.00", None, []),
    ("李梅", "13800000012", "2023-12-25", "active", None, None, None, []),
]


@pytest.fixture
def members(services):
    """Twelve members written through the record service; name → record dict as seeded."""
    out = {}
    for name, mobile, joined, status, channel, spent, email, tags in SEED:
        data = {"name": name, "mobile": mobile, "joined_on": joined, "status": status, "join_channel": channel,
                "total_spent": spent, "email": email, "tags": tags}
        data["id"] = services.records.create("membership.member", {k: v for k, v in data.items() if k != "id"}, SYSTEM)
        out[name] = data
    return out


def names(resp) -> list[str]:
    assert resp.status_code == 200, resp.get_json()
    return [r["name"] for r in resp.get_json()["items"]]


def listed(api, tree, **params) -> set[str]:
    query = "&".join([f"filter={filter_param(tree)}", "limit=200"] + [f"{k}={v}" for k, v in params.items()])
    return set(names(api.get(f"{MEMBERS}?{query}")))


def spent(m) -> decimal.Decimal | None:
    return None if m["total_spent"] is None else decimal.Decimal(m["total_spent"])


def test_filter_operators(api, members):
    ms = members.values()
    assert listed(api, {"field": "status", "op": "eq", "value": "lost"}) == {m["name"] for m in ms if m["status"] == "lost"}
    assert listed(api, {"field": "join_channel", "op": "in", "value": ["online", "referral"]}) == {
        m["name"] for m in ms if m["join_channel"] in ("online", "referral")}
    assert listed(api, {"field": "total_spent", "op": "gte", "value": "210"}) == {
        m["name"] for m in ms if spent(m) is not None and spent(m) >= 210}
    assert listed(api, {"field": "joined_on", "op": "between", "value": ["2023-03-01", "2023-06-30"]}) == {
        m["name"] for m in ms if "2023-03-01" <= m["joined_on"] <= "2023-06-30"}
    assert listed(api, {"field": "name", "op": "starts_with", "value": "李"}) == {"李娜", "李雷", "李梅"}
    assert listed(api, {"field": "email", "op": "is_not_empty"}) == {m["name"] for m in ms if m["email"]}
    assert listed(api, {"field": "tags", "op": "contains_any", "value": ["高价值", "沉睡"]}) == {
        m["name"] for m in ms if {"高价值", "沉睡"} & set(m["tags"])}
    assert listed(api, {"field": "status", "op": "ne", "value": "active"}) == {m["name"] for m in ms if m["status"] != "active"}


def test_nested_and_or_filter(api, members):
    tree = {"and": [
        {"field": "status", "op": "eq", "value": "active"},
        {"or": [{"field": "join_channel", "op": "eq", "value": "store"}, {"field": "total_spent", "op": "gt", "value": 500}]},
    ]}
    expected = {m["name"] for m in members.values()
                if m["status"] == "active" and (m["join_channel"] == "store" or (spent(m) or 0) > 500)}
    assert listed(api, tree) == expected and expected == {"张伟", "刘洋", "杨磊", "赵敏", "周杰", "李雷"}


def test_sort_by_several_keys(api, members):
    got = names(api.get(f"{MEMBERS}?sort=-total_spent,name&limit=200"))
    with_spent = sorted((m for m in members.values() if spent(m) is not None), key=lambda m: (-spent(m), m["name"]))
    assert got[: len(with_spent)] == [m["name"] for m in with_spent]
    assert got[-1] == "李梅"  # empty values sort last
    asc = names(api.get(f"{MEMBERS}?sort=joined_on&limit=3"))
    assert asc == ["张伟", "李娜", "王芳"]


def test_search_matches_all_words(api, members):
    assert set(names(api.get(f"{MEMBERS}?search=李"))) == {"李娜", "李雷", "李梅"}
    assert names(api.get(f"{MEMBERS}?search=13800000006")) == ["杨磊"]
    assert names(api.get(f"{MEMBERS}?search=李 13800000011")) == ["李雷"]
    assert names(api.get(f"{MEMBERS}?search=nobody")) == []


def test_fields_limits_the_returned_fields(api, members):
    items = api.get(f"{MEMBERS}?fields=name,total_spent&sort=name&limit=1").get_json()["items"]
    assert set(items[0]) - {"name", "total_spent"} <= {"id", "row_version", "created_at", "updated_at", "created_by", "updated_by",
                                                        "owner_id", "org_unit_id", "deleted_at", "deleted_by", "workflow_state", "_labels"}
    assert "mobile" not in items[0] and "name" in items[0]


def test_cursor_pages_have_no_gaps_or_duplicates(api, members):
    for sort in ("-joined_on", "total_spent,-name", "name"):
        seen, cursor, pages = [], None, []
        while True:
            url = f"{MEMBERS}?sort={sort}&limit=5" + (f"&cursor={cursor}" if cursor else "")
            body = api.get(url).get_json()
            pages.append(body)
            seen += [r["id"] for r in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == len(members), sort
        assert [r["name"] for p in pages for r in p["items"]] == names(api.get(f"{MEMBERS}?sort={sort}&limit=200")), sort
        assert pages[0]["prev_cursor"] is None
        back = api.get(f"{MEMBERS}?sort={sort}&limit=5&cursor={pages[1]['prev_cursor']}").get_json()
        assert [r["id"] for r in back["items"]] == [r["id"] for r in pages[0]["items"]], sort


def test_cursor_of_another_sort_is_refused(api, members):
    cursor = api.get(f"{MEMBERS}?sort=name&limit=2").get_json()["next_cursor"]
    assert_error(api.get(f"{MEMBERS}?sort=-joined_on&limit=2&cursor={cursor}"), 400, "bad_query")
    assert_error(api.get(f"{MEMBERS}?cursor=not-a-cursor"), 400, "bad_query")


def test_count_modes(api, members):
    filtered = f"filter={filter_param({'field': 'status', 'op': 'eq', 'value': 'active'})}&limit=2"
    active = sum(1 for m in members.values() if m["status"] == "active")
    capped = api.get(f"{MEMBERS}?{filtered}").get_json()
    assert capped["total"] == active and capped["total_exact"] is True and len(capped["items"]) == 2
    exact = api.get(f"{MEMBERS}?{filtered}&count=exact").get_json()
    assert exact["total"] == active and exact["total_exact"] is True
    none = api.get(f"{MEMBERS}?{filtered}&count=none").get_json()
    assert none["total"] is None and none["total_exact"] is False and none["next_cursor"]


def test_recycle_bin_list(api, members, services):
    gone = members["王芳"]["id"]
    services.records.delete("membership.member", gone, SYSTEM)
    assert "王芳" not in names(api.get(f"{MEMBERS}?limit=200"))
    binned = api.get(f"{MEMBERS}?deleted=true").get_json()
    assert [r["name"] for r in binned["items"]] == ["王芳"] and binned["total"] == 1
    dt.datetime.fromisoformat(binned["items"][0]["deleted_at"])
