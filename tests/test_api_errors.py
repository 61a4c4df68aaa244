"""REST API bad input: always a JSON {code, message, details?} 4xx, never HTML or a 500, and nothing stored."""
from __future__ import annotations

import json

import pytest

from api_support import MEMBERS, assert_error, filter_param, member, row_count, stored, token_client


@pytest.fixture
def api(app, api_token):
    """A client authenticated as the admin user with a JWT."""
    return token_client(app, api_token)


@pytest.fixture
def one_member(api):
    resp = api.post(MEMBERS, json=member())
    assert resp.status_code == 201
    return resp.get_json()


def snapshot(services) -> tuple:
    return (row_count(services, "membership.member"), row_count(services, "membership.level"))


def test_body_errors(api, one_member, services):
    before = snapshot(services)
    cases = [
        (dict(data='{"name": "张伟", ', content_type="application/json"), 400, "bad_request", "not valid JSON"),
        (dict(data="[1, 2]", content_type="application/json"), 400, "bad_request", "JSON object"),
        (dict(data="", content_type="application/json"), 400, "bad_request", "empty"),
        (dict(data='{"name": NaN}', content_type="application/json"), 400, "bad_request", "NaN"),
        (dict(data=b'{"name": "\xff"}', content_type="application/json"), 400, "bad_request", "UTF-8"),
        (dict(data="name=x", content_type="application/x-www-form-urlencoded"), 415, "unsupported_media_type", "application/json"),
        (dict(data="[" * 100_000, content_type="application/json"), 400, "bad_request", ""),
    ]
    for kwargs, status, code, words in cases:
        body = assert_error(api.post(MEMBERS, **kwargs), status, code)
        assert words in body["message"], body
    assert snapshot(services) == before


def test_field_errors_name_each_field(api, one_member, services):
    before = snapshot(services)
    cases = [
        ({"name": 123456, "mobile": "13900000000", "joined_on": "2024-01-01", "level_value": "x"}, None),
        (member(mobile="13900000000", nickname="小张"), "nickname"),  # unknown field
        (member(mobile="13900000000", joined_on="15/03/2024"), "joined_on"),  # wrong type / format
        (member(mobile="13900000000", total_spent="abc"), "total_spent"),
        (member(mobile="13900000000", consent_sms="maybe"), "consent_sms"),
        (member(mobile="13900000000", gender="other"), "gender"),  # not an option
        (member(mobile="13900000000", name="长" * 51), "name"),  # longer than max_length 50
        (member(mobile="13900000000", notes="x" * 5001), "notes"),
        (member(mobile="13900000000", level=10**30), "level"),  # beyond 64 bits
        (member(mobile="13900000000", level=999), "level"),  # no such level
        (member(mobile="13900000000", name="张\u0000伟"), "name"),  # NUL cannot be stored
        (member(mobile="13900000000", tags=["x" * 33]), "tags"),
        (member(mobile="13800138000"), "mobile"),  # unique value already used
        ({"name": "张伟"}, "mobile"),  # required fields missing
        (member(mobile="13900000000", card_no="VIP123"), "card_no"),  # read-only
    ]
    for payload, field in cases:
        resp = api.post(MEMBERS, json=payload)
        body = assert_error(resp, 422, "validation_failed")
        fields = body["details"]["fields"]
        assert all(isinstance(m, list) and m and all(isinstance(x, str) for x in m) for m in fields.values()), body
        if field:
            assert field in fields, (payload, body)
    resp = api.post(MEMBERS, json={"name": "张伟", "joined_on": "2024-01-01", "mobile": "13900000000", "nickname": 1})
    assert assert_error(resp, 422, "validation_failed")["details"]["fields"]["nickname"] == ["Unknown field."]
    assert snapshot(services) == before


def test_update_errors_leave_the_record_unchanged(api, one_member, services):
    url = f"{MEMBERS}/{one_member['id']}"
    assert_error(api.patch(url, json={"row_version": 1, "birthday": "not a date"}), 422, "validation_failed")
    assert_error(api.patch(url, json={"row_version": 1, "nickname": "x"}), 422, "validation_failed")
    assert_error(api.patch(url, data="{oops", content_type="application/json"), 400, "bad_request")
    assert_error(api.patch(url, json={"row_version": 1, "name": None}), 422, "validation_failed")  # required
    row = stored(services, "membership.member", one_member["id"])
    assert row["row_version"] == 1 and row["name"] == "张伟" and row["birthday"] is None


def test_oversized_body_is_refused(api, services):
    before = snapshot(services)
    resp = api.post(MEMBERS, data=json.dumps(member(notes="x" * (3 * 1024 * 1024))), content_type="application/json")
    assert "2 MiB" in assert_error(resp, 413, "too_large")["message"]
    assert snapshot(services) == before


def test_not_found_and_method_errors_are_json(api, one_member):
    assert_error(api.get("/api/v1/records/membership.nothing"), 404, "not_found")
    assert_error(api.get("/api/v1/records/membership.nothing/1"), 404, "not_found")
    assert_error(api.post("/api/v1/records/nothing", json={}), 404, "not_found")
    assert_error(api.get(f"{MEMBERS}/999999"), 404, "not_found")
    assert_error(api.get(f"{MEMBERS}/{2**70}"), 404, "not_found")
    assert_error(api.get(f"{MEMBERS}/abc"), 404, "not_found")
    assert "openapi.json" in assert_error(api.get("/api/v1/no/such/route"), 404, "not_found")["message"]
    assert_error(api.patch(f"{MEMBERS}/999999", json={"row_version": 1, "name": "x"}), 404, "not_found")
    assert_error(api.delete(f"{MEMBERS}/999999"), 404, "not_found")
    resp = api.put(f"{MEMBERS}/{one_member['id']}", json={})
    assert "PATCH" in assert_error(resp, 405, "method_not_allowed")["message"] and "PATCH" in resp.headers["Allow"]
    assert_error(api.delete(MEMBERS), 405, "method_not_allowed")


def test_query_errors_are_bad_query(api, one_member, services):
    before = snapshot(services)
    bad = [
        "filter={not json",
        f"filter={filter_param({'field': 'nope', 'op': 'eq', 'value': 1})}",
        f"filter={filter_param({'field': 'name', 'op': 'gt; DROP TABLE membership_member', 'value': 1})}",
        f"filter={filter_param({'field': 'name; DROP TABLE membership_member; --', 'op': 'eq', 'value': 1})}",
        f"filter={filter_param({'field': 'total_spent', 'op': 'eq', 'value': '1; DROP TABLE membership_member'})}",
        f"filter={filter_param({'field': 'joined_on', 'op': 'eq', 'value': '2024-01-01 OR 1=1'})}",
        f"filter={filter_param({'field': 'level', 'op': 'eq', 'value': 10**30})}",
        f"filter={filter_param({'field': 'name', 'op': 'eq', 'value': 'a', 'sql': 'x'})}",
        f"filter={filter_param({'and': {'field': 'name'}})}",
        f"filter={filter_param({'field': 'tags', 'op': 'gt', 'value': 'x'})}",
        "sort=name;DROP TABLE membership_member",
        "sort=-name) --",
        "sort=notes",  # long text is not sortable
        "sort=name,mobile,joined_on,status",  # at most three keys
        "fields=name,password",
        "limit=0", "limit=201", "limit=ten", "count=all", "deleted=maybe",
        "cursor=%27%3B--", "unknown=1", "limit=1&limit=2",
    ]
    for query in bad:
        body = assert_error(api.get(f"{MEMBERS}?{query}"), 400, "bad_query")
        assert len(body["message"]) < 600, query
    assert snapshot(services) == before
    assert stored(services, "membership.member", one_member["id"])["name"] == "张伟"


def test_sql_metacharacters_in_text_values_are_just_text(api, one_member, services):
    tricky = "张'; DROP TABLE membership_member; --"
    tree = {"or": [{"field": "name", "op": "eq", "value": tricky}, {"field": "name", "op": "contains", "value": "%' OR '1'='1"}]}
    resp = api.get(f"{MEMBERS}?filter={filter_param(tree)}")
    assert resp.status_code == 200 and resp.get_json()["items"] == []
    assert api.get(f"{MEMBERS}?search=%25%27%20OR%201%3D1").get_json()["items"] == []
    created = api.post(MEMBERS, json=member(mobile="13900000000", name=tricky))
    assert created.status_code == 201
    found = api.get(f"{MEMBERS}?filter={filter_param({'field': 'name', 'op': 'eq', 'value': tricky})}").get_json()["items"]
    assert [r["name"] for r in found] == [tricky]
    assert row_count(services, "membership.member") == 2


def test_child_entity_has_no_endpoint(api, services):
    from core_support import lab_documents, publish

    publish(services, lab_documents())
    assert_error(api.post("/api/v1/records/lab.sample_line", json={"item": "x"}), 404, "not_found")
    assert row_count(services, "lab.sample_line") == 0
