"""Integration API: bulk create/upsert with per-record results, Idempotency-Key replay/conflict, incremental sync."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from crmkit.runtime.imports.tables import idempotency_key
from crmkit.runtime.storage import platform_tables as pt

from api_support import MEMBERS, assert_error, member, row_count, stored, token_client


@pytest.fixture
def api(app, api_token):
    return token_client(app, api_token)


def test_bulk_create_reports_each_record_and_commits_the_valid_ones(api, services):
    records = [member(name=f"批量{i}", mobile=f"1370000{i:04d}") for i in range(5)]
    records[2]["mobile"] = "123"
    records[4]["mobile"] = records[0]["mobile"]  # duplicate inside the call
    resp = api.post(f"{MEMBERS}/bulk-create", json={"records": records})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert [r["status"] for r in body["results"]] == ["created", "created", "error", "created", "error"]
    assert "mobile" in body["results"][2]["errors"] and "mobile" in body["results"][4]["errors"]
    assert body["counts"] == {"created": 3, "updated": 0, "unchanged": 0, "skipped": 0, "error": 2}
    assert row_count(services, "membership.member") == 3
    rid = body["results"][0]["id"]
    assert stored(services, "membership.member", rid)["name"] == "批量0"
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(pt.outbox)).scalar() == 3


def test_bulk_upsert_matches_by_key(api, services):
    api.post(f"{MEMBERS}/bulk-create", json={"records": [member(name="甲", mobile="13700000001")]})
    resp = api.post(f"{MEMBERS}/bulk-upsert", json={"key": "mobile", "records": [member(name="甲改", mobile="13700000001"),
                                                                                   member(name="乙", mobile="13700000002")]})
    body = resp.get_json()
    assert [r["status"] for r in body["results"]] == ["updated", "created"], body
    assert row_count(services, "membership.member") == 2
    assert stored(services, "membership.member", body["results"][0]["id"])["name"] == "甲改"


def test_bulk_limits_and_bad_bodies(api, services):
    assert_error(api.post(f"{MEMBERS}/bulk-create", json={"records": [member()] * 1001}), 422, "validation_failed")
    assert_error(api.post(f"{MEMBERS}/bulk-create", json={"records": []}), 422, "validation_failed")
    assert_error(api.post(f"{MEMBERS}/bulk-create", json={"records": [1]}), 422, "validation_failed")
    assert_error(api.post(f"{MEMBERS}/bulk-upsert", json={"records": [member()]}), 422, "validation_failed")
    assert_error(api.post(f"{MEMBERS}/bulk-upsert", json={"key": "name", "records": [member()]}), 422, "validation_failed")
    assert row_count(services, "membership.member") == 0


def test_idempotency_replay_conflict_and_scope(app, api, services):
    headers = {"Idempotency-Key": "order-42"}
    first = api.post(MEMBERS, json=member(), headers=headers)
    assert first.status_code == 201
    again = api.post(MEMBERS, json=member(), headers=headers)
    assert again.status_code == 201 and again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true" and again.headers["Location"] == first.headers["Location"]
    assert row_count(services, "membership.member") == 1
    conflict = api.post(MEMBERS, json=member(name="别人"), headers=headers)
    assert_error(conflict, 409, "idempotency_conflict")
    # a validation error is a response too: replayed, not re-run
    bad1 = api.post(MEMBERS, json=member(mobile="1"), headers={"Idempotency-Key": "k2"})
    bad2 = api.post(MEMBERS, json=member(mobile="1"), headers={"Idempotency-Key": "k2"})
    assert bad1.status_code == bad2.status_code == 422 and bad2.headers["Idempotent-Replayed"] == "true"
    assert_error(api.post(MEMBERS, json=member(), headers={"Idempotency-Key": "bad key with spaces"}), 400, "bad_request")
    # bulk calls too
    bulk = {"records": [member(name="丙", mobile="13700000003")]}
    b1 = api.post(f"{MEMBERS}/bulk-create", json=bulk, headers={"Idempotency-Key": "bulk-1"})
    b2 = api.post(f"{MEMBERS}/bulk-create", json=bulk, headers={"Idempotency-Key": "bulk-1"})
    assert b1.get_json() == b2.get_json() and row_count(services, "membership.member") == 2
    # keys are per user: another user's same key is a fresh request
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user("api2", "Api", "Two", "api2@example.com", sm.find_role("Admin"), "api2-pass-123456")
        app.extensions["sqlalchemy"].session.remove()
    tok = app.test_client().post("/api/v1/security/login", json={"username": "api2", "password": "api2-pass-123456", "provider": "db"}).get_json()["access_token"]
    other = token_client(app, tok).post(MEMBERS, json=member(mobile="13700000009"), headers=headers)
    assert other.status_code == 201 and "Idempotent-Replayed" not in other.headers
    # expired keys are forgotten
    with services.engine.begin() as conn:
        conn.execute(idempotency_key.update().values(expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)))
    fresh = api.post(MEMBERS, json=member(name="别人", mobile="13700000010"), headers=headers)
    assert fresh.status_code == 201 and "Idempotent-Replayed" not in fresh.headers


def test_sync_pages_by_updated_at_and_reports_tombstones(api, services):
    ids = [api.post(MEMBERS, json=member(name=f"同步{i}", mobile=f"1360000{i:04d}")).get_json()["id"] for i in range(5)]
    got, cursor = [], None
    while True:
        resp = api.get(f"{MEMBERS}/sync", query_string={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200, resp.get_json()
        body = resp.get_json()
        got += body["items"]
        cursor = body["sync_cursor"]
        if not body["has_more"]:
            break
    assert [r["id"] for r in got] == ids and all(r["deleted"] is False and r["name"] for r in got)
    # nothing new: the saved cursor returns nothing and stays put
    body = api.get(f"{MEMBERS}/sync", query_string={"cursor": cursor}).get_json()
    assert body["items"] == [] and body["sync_cursor"] == cursor
    # an update and a delete show up after the cursor, the deletion as a tombstone
    rec = api.get(f"{MEMBERS}/{ids[1]}").get_json()
    api.patch(f"{MEMBERS}/{ids[1]}", json={"name": "改名", "row_version": rec["row_version"]})
    assert api.delete(f"{MEMBERS}/{ids[3]}").status_code == 204
    body = api.get(f"{MEMBERS}/sync", query_string={"cursor": cursor}).get_json()
    assert [(r["id"], r["deleted"]) for r in body["items"]] == [(ids[1], False), (ids[3], True)]
    assert body["items"][0]["name"] == "改名" and set(body["items"][1]) == {"id", "deleted", "deleted_at", "updated_at", "row_version"}
    # updated_since as a timestamp
    since = body["items"][0]["updated_at"]
    body = api.get(f"{MEMBERS}/sync", query_string={"updated_since": since}).get_json()
    assert [r["id"] for r in body["items"]] == [ids[1], ids[3]]
    assert_error(api.get(f"{MEMBERS}/sync", query_string={"updated_since": "yesterday-ish"}), 400, "bad_query")
    assert_error(api.get(f"{MEMBERS}/sync", query_string={"cursor": "garbage"}), 400, "bad_query")


def test_idempotent_file_upload_reads_the_multipart_body(api, services):
    import io

    data = lambda: {"file": (io.BytesIO(b"hello"), "a.txt")}  # noqa: E731
    first = api.post("/api/v1/files", data=data(), content_type="multipart/form-data", headers={"Idempotency-Key": "up-1"})
    assert first.status_code == 201 and first.get_json()["size"] == 5
    again = api.post("/api/v1/files", data=data(), content_type="multipart/form-data", headers={"Idempotency-Key": "up-1"})
    assert again.get_json() == first.get_json() and again.headers["Idempotent-Replayed"] == "true"
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(pt.stored_file)).scalar() == 1
