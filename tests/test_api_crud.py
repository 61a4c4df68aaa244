"""REST API: create, read, update, delete, restore, bulk changes, history and child rows."""
from __future__ import annotations

import datetime as dt
import decimal

import pytest

from api_support import MEMBERS, assert_error, create_gold, member, row_count, stored, token_client
from core_support import lab_documents, publish


@pytest.fixture
def api(app, api_token):
    """A client authenticated as the admin user with a JWT."""
    return token_client(app, api_token)


@pytest.fixture
def gold(api):
    return create_gold(api)


def test_create_returns_the_stored_record_with_location(api, gold, services):
    resp = api.post(MEMBERS, json=member(level=gold["id"], total_spent="1234.5", tags=["高价值", "新客"], gender="female", consent_sms=True))
    assert resp.status_code == 201
    body = resp.get_json()
    assert resp.headers["Location"] == f"{MEMBERS}/{body['id']}"
    assert body["name"] == "张伟" and body["mobile"] == "13800138000"
    assert body["total_spent"] == "1234.50"  # decimals as strings
    assert body["joined_on"] == "2024-03-15"  # dates ISO
    assert body["card_no"] == "VIP00000001"  # sequence assigned by the record service
    assert body["status"] == "active"  # default applied
    assert body["tags"] == ["高价值", "新客"] and body["consent_sms"] is True
    assert body["level"] == gold["id"] and body["_labels"]["level"] == "金卡"
    assert body["row_version"] == 1 and body["_labels"]["created_by"] == "admin"
    dt.datetime.fromisoformat(body["created_at"])
    row = stored(services, "membership.member", body["id"])
    assert row["total_spent"] == decimal.Decimal("1234.50")
    assert row["joined_on"] == dt.date(2024, 3, 15)
    assert row["gender"] == "female" and row["level"] == gold["id"]
    assert api.get(resp.headers["Location"]).get_json() == body


def test_level_decimal_and_select_round_trip(api, gold, services):
    assert gold["discount"] == "8.50" and gold["color"] == "gold" and gold["level_value"] == 30
    row = stored(services, "membership.level", gold["id"])
    assert row["discount"] == decimal.Decimal("8.50") and row["code"] == "GOLD"


def test_update_changes_only_sent_fields_and_bumps_version(api, services):
    created = api.post(MEMBERS, json=member(email="zw@example.com")).get_json()
    resp = api.patch(f"{MEMBERS}/{created['id']}", json={"row_version": 1, "address": "上海市静安区", "total_spent": "99.9"},
                     headers={"X-Request-ID": "trace-42"})
    assert resp.status_code == 200 and resp.headers["X-Request-ID"] == "trace-42"
    body = resp.get_json()
    assert body["row_version"] == 2 and body["address"] == "上海市静安区" and body["total_spent"] == "99.90"
    assert body["email"] == "zw@example.com"
    row = stored(services, "membership.member", created["id"])
    assert row["address"] == "上海市静安区" and row["total_spent"] == decimal.Decimal("99.90") and row["row_version"] == 2


def test_a_fetched_record_can_be_sent_back_as_a_patch(api, services):
    created = api.post(MEMBERS, json=member()).get_json()
    fetched = api.get(f"{MEMBERS}/{created['id']}").get_json()
    fetched["notes"] = "VIP 客户"
    for read_only in ("card_no",):  # read-only fields may be echoed unchanged
        assert read_only in fetched
    resp = api.patch(f"{MEMBERS}/{created['id']}", json=fetched)
    assert resp.status_code == 200, resp.get_json()
    assert stored(services, "membership.member", created["id"])["notes"] == "VIP 客户"


def test_stale_update_is_refused_with_the_current_version(api, services):
    rid = api.post(MEMBERS, json=member()).get_json()["id"]
    first = api.patch(f"{MEMBERS}/{rid}", json={"row_version": 1, "name": "李娜"})
    assert first.status_code == 200
    second = api.patch(f"{MEMBERS}/{rid}", json={"row_version": 1, "name": "王芳"})
    body = assert_error(second, 409, "stale_record")
    assert body["details"]["current_version"] == 2
    row = stored(services, "membership.member", rid)
    assert row["name"] == "李娜" and row["row_version"] == 2


def test_update_without_or_with_a_bad_row_version_is_refused(api, services):
    rid = api.post(MEMBERS, json=member()).get_json()["id"]
    missing = assert_error(api.patch(f"{MEMBERS}/{rid}", json={"name": "李娜"}), 422, "validation_failed")
    assert "row_version" in missing["details"]["fields"]
    for bad in ("1", True, 0, 1.5):
        body = assert_error(api.patch(f"{MEMBERS}/{rid}", json={"row_version": bad, "name": "李娜"}), 422, "validation_failed")
        assert "row_version" in body["details"]["fields"]
    row = stored(services, "membership.member", rid)
    assert row["name"] == "张伟" and row["row_version"] == 1


def test_delete_moves_to_recycle_bin_and_restore_brings_it_back(api, services):
    rid = api.post(MEMBERS, json=member()).get_json()["id"]
    resp = api.delete(f"{MEMBERS}/{rid}")
    assert resp.status_code == 204 and resp.get_data() == b""
    assert_error(api.get(f"{MEMBERS}/{rid}"), 404, "not_found")
    assert api.get(MEMBERS).get_json()["items"] == []
    binned = api.get(f"{MEMBERS}?deleted=true").get_json()["items"]
    assert [r["id"] for r in binned] == [rid] and binned[0]["deleted_at"]
    assert api.get(f"{MEMBERS}/{rid}?deleted=true").get_json()["deleted_at"]
    assert row_count(services, "membership.member") == 1  # soft delete keeps the row

    restored = api.post(f"{MEMBERS}/{rid}/restore")
    assert restored.status_code == 200
    assert restored.get_json()["deleted_at"] is None and restored.get_json()["row_version"] == 3
    assert stored(services, "membership.member", rid)["name"] == "张伟"
    assert_error(api.post(f"{MEMBERS}/{rid}/restore"), 422, "validation_failed")  # not in the bin any more


def test_delete_with_a_stale_row_version_is_refused(api, services):
    rid = api.post(MEMBERS, json=member()).get_json()["id"]
    api.patch(f"{MEMBERS}/{rid}", json={"row_version": 1, "notes": "x"})
    assert_error(api.delete(f"{MEMBERS}/{rid}?row_version=1"), 409, "stale_record")
    assert_error(api.delete(f"{MEMBERS}/{rid}", json={"row_version": 1}), 409, "stale_record")
    assert_error(api.delete(f"{MEMBERS}/{rid}?row_version=abc"), 422, "validation_failed")
    assert stored(services, "membership.member", rid)["deleted_at"] is None
    assert api.delete(f"{MEMBERS}/{rid}?row_version=2").status_code == 204
    assert stored(services, "membership.member", rid, deleted=True)["deleted_at"] is not None


def test_history_lists_every_change_newest_first(api):
    rid = api.post(MEMBERS, json=member()).get_json()["id"]
    api.patch(f"{MEMBERS}/{rid}", json={"row_version": 1, "name": "李娜"})
    api.delete(f"{MEMBERS}/{rid}")
    api.post(f"{MEMBERS}/{rid}/restore")
    resp = api.get(f"{MEMBERS}/{rid}/history")
    assert resp.status_code == 200
    items = resp.get_json()["items"]
    assert [i["action"] for i in items] == ["restore", "delete", "update", "create"]
    assert items[2]["changes"] == {"name": ["张伟", "李娜"]}
    assert items[3]["changes"]["mobile"] == [None, "13800138000"]
    assert all(i["actor"] == "admin" for i in items)
    dt.datetime.fromisoformat(items[0]["at"])
    assert [i["action"] for i in api.get(f"{MEMBERS}/{rid}/history?limit=1").get_json()["items"]] == ["restore"]
    assert_error(api.get(f"{MEMBERS}/999/history"), 404, "not_found")
    assert_error(api.get(f"{MEMBERS}/{rid}/history?limit=0"), 400, "bad_query")


def test_bulk_update_and_bulk_delete(api, services):
    ids = [api.post(MEMBERS, json=member(mobile=f"1390000000{i}", name=f"会员{i}")).get_json()["id"] for i in range(3)]
    resp = api.post(f"{MEMBERS}/bulk-update", json={"ids": ids[:2], "values": {"status": "lost"}})
    assert resp.status_code == 200 and resp.get_json() == {"matched": 2, "changed": 2}
    assert [stored(services, "membership.member", i)["status"] for i in ids] == ["lost", "lost", "active"]
    history = api.get(f"{MEMBERS}/{ids[0]}/history").get_json()["items"]
    assert history[0]["action"] == "update" and history[0]["changes"] == {"status": ["active", "lost"]}

    resp = api.post(f"{MEMBERS}/bulk-delete", json={"ids": ids[1:]})
    assert resp.status_code == 200 and resp.get_json() == {"deleted": 2}
    assert [r["id"] for r in api.get(MEMBERS).get_json()["items"]] == [ids[0]]


def test_bulk_requests_with_bad_input_change_nothing(api, services):
    ids = [api.post(MEMBERS, json=member(mobile=f"1390000000{i}")).get_json()["id"] for i in range(2)]
    cases = [
        ({"ids": ids, "values": {"status": "nonsense"}}, "status"),
        ({"ids": ids, "values": {"nickname": "x"}}, "nickname"),
        ({"ids": [], "values": {"status": "lost"}}, "ids"),
        ({"ids": ["1", True], "values": {"status": "lost"}}, "ids"),
        ({"ids": ids, "values": "lost"}, "values"),
        ({"ids": ids, "values": {"status": "lost"}, "extra": 1}, "extra"),
        ({"ids": ids + [9999], "values": {"status": "lost"}}, None),
    ]
    for payload, field in cases:
        resp = api.post(f"{MEMBERS}/bulk-update", json=payload)
        assert resp.status_code in (404, 422), (payload, resp.get_json())
        if field:
            assert field in resp.get_json()["details"]["fields"], (payload, resp.get_json())
    assert [stored(services, "membership.member", i)["status"] for i in ids] == ["active", "active"]
    assert_error(api.post(f"{MEMBERS}/bulk-delete", json={"ids": ids + [9999]}), 404, "not_found")
    assert row_count(services, "membership.member", include_deleted=False) == 2  # all or nothing


def test_child_rows_are_read_and_written_through_the_parent(app, api, services):
    publish(services, lab_documents())  # installs lab.category, lab.sample (with child lab.sample_line)
    samples = "/api/v1/records/lab.sample"
    resp = api.post(samples, json={"title": "样本一", "lines": [{"item": "螺丝", "qty": 3}, {"item": "螺母", "qty": 5}]})
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert [(r["item"], r["qty"]) for r in body["lines"]] == [("螺丝", 3), ("螺母", 5)]
    keep = body["lines"][1]
    resp = api.patch(f"{samples}/{body['id']}", json={"row_version": body["row_version"], "lines": [{"id": keep["id"], "item": "螺母", "qty": 6}]})
    assert resp.status_code == 200, resp.get_json()
    assert [(r["id"], r["qty"]) for r in resp.get_json()["lines"]] == [(keep["id"], 6)]
    assert [(r["item"], r["qty"]) for r in stored(services, "lab.sample", body["id"])["lines"]] == [("螺母", 6)]
    bad = assert_error(api.post(samples, json={"title": "样本二", "lines": [{"qty": "many"}]}), 422, "validation_failed")
    assert "lines.0.qty" in bad["details"]["fields"] and "lines.0.item" in bad["details"]["fields"]
    assert_error(api.get("/api/v1/records/lab.sample_line"), 404, "not_found")
    assert row_count(services, "lab.sample") == 1


def test_uploaded_files_go_into_attachment_fields(api, services):
    import io

    publish(services, lab_documents())
    resp = api.post("/api/v1/files", data={"file": (io.BytesIO(b"hello crmkit"), "notes.txt")}, content_type="multipart/form-data")
    assert resp.status_code == 201, resp.get_json()
    upload = resp.get_json()
    assert upload["name"] == "notes.txt" and upload["size"] == 12 and len(upload["id"]) == 32
    created = api.post("/api/v1/records/lab.sample", json={"title": "带附件", "files": [upload["id"]]})
    assert created.status_code == 201, created.get_json()
    assert [f["name"] for f in created.get_json()["files"]] == ["notes.txt"]
    assert stored(services, "lab.sample", created.get_json()["id"])["files"][0]["size"] == 12

    exe = api.post("/api/v1/files", data={"file": (io.BytesIO(b"MZ"), "tool.exe")}, content_type="multipart/form-data").get_json()
    bad = assert_error(api.post("/api/v1/records/lab.sample", json={"title": "x", "files": [exe["id"]]}), 422, "validation_failed")
    assert "files" in bad["details"]["fields"]
    assert "files" in assert_error(api.post("/api/v1/records/lab.sample", json={"title": "x", "files": ["0" * 32]}), 422, "validation_failed")["details"]["fields"]
    assert_error(api.post("/api/v1/files", data={}, content_type="multipart/form-data"), 422, "validation_failed")
    assert_error(api.post("/api/v1/files", json={"file": "x"}), 415, "unsupported_media_type")
    assert row_count(services, "lab.sample") == 1
