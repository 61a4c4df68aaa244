"""RecordService, the one write path: validate → authorize → persist → audit → outbox, in one
transaction; nothing is half-saved, stale edits are refused, deletes are soft and restorable."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from core_support import admin_id, fresh_services, lab_documents, publish
from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.errors import PermissionDenied, RecordNotFound, StaleRecord, ValidationFailed
from crmkit.runtime.storage import platform_tables as pt


@pytest.fixture(scope="module")
def lab(databases, tmp_path_factory):
    services = fresh_services(databases, tmp_path_factory)
    publish(services, lab_documents())
    yield services
    services.engine.dispose()


@pytest.fixture(scope="module")
def admin(lab):
    return Actor(id=admin_id(lab), username="admin", is_admin=True)


def audit_rows(s, entity, rid):
    with s.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(pt.audit).where(pt.audit.c.entity == entity, pt.audit.c.record_id == rid).order_by(pt.audit.c.id))]


def outbox_rows(s, entity, rid):
    with s.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(pt.outbox).where(pt.outbox.c.entity == entity, pt.outbox.c.record_id == rid).order_by(pt.outbox.c.id))]


def table_counts(s) -> dict:
    with s.engine.connect() as conn:
        out = {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (pt.audit, pt.outbox, pt.sequence)}
        for name in ("lab_category", "lab_sample", "lab_sample_line"):
            out[name] = conn.execute(select(func.count()).select_from(s.records.table_cache.tables(s.store.catalog())[name.replace("lab_", "lab.", 1)])).scalar_one()
    return out


def category(s, name="类别", code=None, actor=SYSTEM):
    return s.records.create("lab.category", {"name": name, "code": code}, actor)


def test_create_persists_audits_and_emits_one_event_in_the_same_transaction(lab, admin):
    before = dt.datetime.now(dt.timezone.utc)
    rid = lab.records.create("lab.category", {"name": "  茶叶 ", "code": "TEA"}, admin, request_id="req-1")
    row = lab.queries.get("lab.category", rid, admin)
    assert (row["name"], row["code"], row["row_version"], row["created_by"], row["owner_id"]) == ("茶叶", "TEA", 1, admin.id, admin.id)
    [audit] = audit_rows(lab, "lab.category", rid)
    assert (audit["action"], audit["actor_id"], audit["request_id"]) == ("create", admin.id, "req-1")
    assert audit["at"] >= before - dt.timedelta(seconds=1)
    assert audit["changes"] == {"name": [None, "茶叶"], "code": [None, "TEA"]}
    [event] = outbox_rows(lab, "lab.category", rid)
    assert event["topic"] == "record.created" and event["dispatched_at"] is None
    assert event["payload"] == {"entity": "lab.category", "id": rid, "changes": audit["changes"], "actor_id": admin.id}


def test_every_invalid_field_is_reported_and_nothing_is_saved(lab):
    before = table_counts(lab)
    with pytest.raises(ValidationFailed) as info:
        lab.records.create("lab.sample", {"title": "x" * 30, "count": "many", "email": "nope", "colour": "red", "lines": [{"item": "ok"}]}, SYSTEM)
    errors = info.value.field_errors
    assert set(errors) == {"title", "count", "email", "colour"}
    assert errors["colour"] == ["Unknown field."]
    assert info.value.to_dict() == {"code": "validation_failed", "message": info.value.message, "details": {"fields": errors}}
    assert table_counts(lab) == before


def test_an_invalid_child_row_saves_nothing_at_all(lab):
    before = table_counts(lab)
    with pytest.raises(ValidationFailed) as info:
        lab.records.create("lab.sample", {"title": "订单", "lines": [{"item": "好的", "qty": 1}, {"item": "坏的", "qty": 0}]}, SYSTEM)
    assert list(info.value.field_errors) == ["lines.1.qty"]
    # no parent row, no child rows, no audit, no event, no sequence number used
    assert table_counts(lab) == before


def test_a_child_row_of_another_record_is_refused_and_the_update_saves_nothing(lab):
    sid = lab.records.create("lab.sample", {"title": "ok", "lines": [{"item": "a"}]}, SYSTEM)
    other = lab.records.create("lab.sample", {"title": "other", "lines": [{"item": "theirs"}]}, SYSTEM)
    theirs = lab.queries.get("lab.sample", other, SYSTEM)["lines"][0]["id"]
    before = table_counts(lab)
    with pytest.raises(ValidationFailed) as info:
        lab.records.update("lab.sample", sid, {"title": "changed", "lines": [{"item": "new"}, {"id": theirs, "item": "stolen"}]}, SYSTEM, expected_version=1)
    assert info.value.field_errors == {"lines.1.id": [f"Row {theirs} does not belong to this record."]}
    assert table_counts(lab) == before
    assert lab.queries.get("lab.sample", sid, SYSTEM)["title"] == "ok"
    assert lab.queries.get("lab.sample", other, SYSTEM)["lines"][0]["item"] == "theirs"


def test_required_fields_on_create_and_update(lab):
    with pytest.raises(ValidationFailed) as info:
        lab.records.create("lab.category", {"code": "NONAME"}, SYSTEM)
    assert info.value.field_errors == {"name": ["This field is required."]}
    rid = category(lab, "有名字")
    with pytest.raises(ValidationFailed) as info:
        lab.records.update("lab.category", rid, {"name": "   "}, SYSTEM, expected_version=1)
    assert info.value.field_errors == {"name": ["This field is required."]}
    # a partial update that leaves the required field alone is fine
    assert lab.records.update("lab.category", rid, {"code": "NAMED"}, SYSTEM, expected_version=1) == 2


def test_unique_value_is_a_field_error_not_a_database_error(lab):
    category(lab, "一", "UNIQ")
    before = table_counts(lab)
    with pytest.raises(ValidationFailed) as info:
        category(lab, "二", "UNIQ")
    assert info.value.field_errors == {"code": ["This value is already used by another Category."]}
    other = category(lab, "三", "OTHER")
    with pytest.raises(ValidationFailed) as info:
        lab.records.update("lab.category", other, {"code": "UNIQ"}, SYSTEM, expected_version=1)
    assert "code" in info.value.field_errors
    assert table_counts(lab)["lab_category"] == before["lab_category"] + 1
    # saving a record with its own unchanged unique value is fine
    assert lab.records.update("lab.category", other, {"code": "OTHER", "name": "三三"}, SYSTEM, expected_version=1) == 2


def test_link_to_a_missing_or_deleted_record_is_a_field_error(lab):
    gone = category(lab, "将删除")
    lab.records.delete("lab.category", gone, SYSTEM)
    for target in (987654, gone):
        with pytest.raises(ValidationFailed) as info:
            lab.records.create("lab.sample", {"title": "链接", "category": target}, SYSTEM)
        assert info.value.field_errors == {"category": [f"There is no Category with id {target}."]}


def test_read_only_fields_are_refused_on_input(lab):
    with pytest.raises(ValidationFailed) as info:
        lab.records.create("lab.category", {"name": "只读", "checked_by": "me"}, SYSTEM)
    assert info.value.field_errors == {"checked_by": ["This field is read-only."]}
    rid = category(lab, "只读二")
    with pytest.raises(ValidationFailed):
        lab.records.update("lab.category", rid, {"checked_by": "me"}, SYSTEM, expected_version=1)
    # sending back the value it already has (a form round trip) is not an error
    assert lab.records.update("lab.category", rid, {"checked_by": None, "name": "只读三"}, SYSTEM, expected_version=1) == 2
    assert lab.queries.get("lab.category", rid, SYSTEM)["checked_by"] is None


def test_input_that_is_not_an_object_is_refused(lab):
    for bad in (None, [], "name=x", 5):
        with pytest.raises(ValidationFailed) as info:
            lab.records.create("lab.category", bad, SYSTEM)
        assert info.value.field_errors == {"_schema": ["Send an object of field names to values."]}


def test_system_columns_cannot_be_set_from_input(lab):
    rid = lab.records.create("lab.category", {"name": "系统", "id": 424242, "row_version": 9, "created_by": 77, "deleted_at": "2020-01-01"}, SYSTEM)
    row = lab.queries.get("lab.category", rid, SYSTEM)
    assert rid != 424242 and row["row_version"] == 1 and row["created_by"] is None and row["deleted_at"] is None


def test_update_records_field_level_old_and_new_values(lab, admin):
    rid = lab.records.create("lab.sample", {"title": "旧", "count": 1, "colors": ["red"]}, admin)
    version = lab.records.update("lab.sample", rid, {"title": "新", "count": 1, "colors": ["red", "green"], "day": "2024年5月1日"}, admin, expected_version=1)
    assert version == 2
    audit = audit_rows(lab, "lab.sample", rid)
    assert [a["action"] for a in audit] == ["create", "update"]
    assert audit[1]["changes"] == {"title": ["旧", "新"], "colors": [["red"], ["red", "green"]], "day": [None, "2024-05-01"]}
    assert audit[1]["actor_id"] == admin.id
    assert [e["topic"] for e in outbox_rows(lab, "lab.sample", rid)] == ["record.created", "record.updated"]
    history = lab.queries.history("lab.sample", rid, admin)
    assert [h["action"] for h in history] == ["update", "create"] and history[0]["actor"] == "admin"
    # an update that changes nothing writes nothing
    assert lab.records.update("lab.sample", rid, {"title": "新"}, admin, expected_version=2) == 2
    assert len(audit_rows(lab, "lab.sample", rid)) == 2


def test_child_rows_are_added_changed_and_removed_with_the_parent(lab):
    rid = lab.records.create("lab.sample", {"title": "明细", "lines": [{"item": "a", "qty": 1}, {"item": "b", "qty": 2}]}, SYSTEM)
    a, b = lab.queries.get("lab.sample", rid, SYSTEM)["lines"]
    lab.records.update("lab.sample", rid, {"lines": [{"id": b["id"], "item": "b", "qty": 5}, {"item": "c"}]}, SYSTEM, expected_version=1)
    lines = lab.queries.get("lab.sample", rid, SYSTEM)["lines"]
    assert [(r["item"], r["qty"]) for r in lines] == [("b", 5), ("c", None)]
    change = audit_rows(lab, "lab.sample", rid)[-1]["changes"]["lines"]
    assert change["removed"] == [a["id"]] and change["changed"] == {str(b["id"]): {"qty": [2, 5]}}
    assert [r["item"] for r in change["added"]] == ["c"]
    with pytest.raises(ValidationFailed) as info:
        lab.records.create("lab.sample_line", {"item": "direct"}, SYSTEM)
    assert "edited through their parent" in info.value.field_errors["_schema"][0]


def test_stale_expected_version_is_refused_and_the_record_is_unchanged(lab):
    rid = category(lab, "并发")
    lab.records.update("lab.category", rid, {"name": "第一人"}, SYSTEM, expected_version=1)
    before = table_counts(lab)
    with pytest.raises(StaleRecord) as info:
        lab.records.update("lab.category", rid, {"name": "第二人"}, SYSTEM, expected_version=1)
    assert info.value.status == 409 and info.value.details == {"current_version": 2}
    assert "version 1" in info.value.message and "Reload" in info.value.message
    row = lab.queries.get("lab.category", rid, SYSTEM)
    assert (row["name"], row["row_version"]) == ("第一人", 2)
    assert table_counts(lab) == before
    with pytest.raises(ValidationFailed) as info:
        lab.records.update("lab.category", rid, {"name": "无版本"}, SYSTEM, expected_version=None)
    assert "row_version" in info.value.field_errors
    with pytest.raises(StaleRecord):
        lab.records.delete("lab.category", rid, SYSTEM, expected_version=1)


def test_soft_delete_and_restore(lab):
    rid = category(lab, "回收站", "BIN")
    lab.records.delete("lab.category", rid, SYSTEM)
    with pytest.raises(RecordNotFound):
        lab.queries.get("lab.category", rid, SYSTEM)
    assert rid not in [r["id"] for r in lab.queries.list("lab.category", SYSTEM, limit=200).rows]
    assert [r["id"] for r in lab.queries.list("lab.category", SYSTEM, deleted=True, limit=200).rows if r["id"] == rid] == [rid]
    assert lab.queries.get("lab.category", rid, SYSTEM, deleted=True)["code"] == "BIN"  # the row is still there
    with pytest.raises(RecordNotFound):
        lab.records.update("lab.category", rid, {"name": "x"}, SYSTEM, expected_version=2)
    with pytest.raises(RecordNotFound):
        lab.records.delete("lab.category", rid, SYSTEM)
    # the deleted record's unique value is free while it is in the bin
    twin = category(lab, "同码", "BIN")
    with pytest.raises(ValidationFailed) as info:
        lab.records.restore("lab.category", rid, SYSTEM)
    assert "another record now uses one of its unique values" in info.value.field_errors["_schema"][0]
    lab.records.delete("lab.category", twin, SYSTEM)
    lab.records.restore("lab.category", rid, SYSTEM)
    row = lab.queries.get("lab.category", rid, SYSTEM)
    assert (row["name"], row["row_version"]) == ("回收站", 3)
    assert [a["action"] for a in audit_rows(lab, "lab.category", rid)] == ["create", "delete", "restore"]
    assert [e["topic"] for e in outbox_rows(lab, "lab.category", rid)] == ["record.created", "record.deleted", "record.restored"]
    with pytest.raises(ValidationFailed) as info:
        lab.records.restore("lab.category", rid, SYSTEM)
    assert "is not in the recycle bin" in info.value.field_errors["_schema"][0]


def test_bulk_update_gives_each_record_its_own_audit_entry_and_event(lab, admin):
    ids = [category(lab, f"批量{i}") for i in range(3)]
    assert lab.records.bulk_update("lab.category", ids + [ids[0]], {"name": "统一"}, admin, request_id="bulk-1") == 3
    for rid in ids:
        row = lab.queries.get("lab.category", rid, admin)
        assert (row["name"], row["row_version"]) == ("统一", 2)
        audit = audit_rows(lab, "lab.category", rid)
        assert [(a["action"], a["request_id"]) for a in audit] == [("create", None), ("update", "bulk-1")]
        assert audit[1]["changes"] == {"name": [f"批量{ids.index(rid)}", "统一"]}
        assert [e["topic"] for e in outbox_rows(lab, "lab.category", rid)] == ["record.created", "record.updated"]


def test_bulk_update_is_all_or_nothing_including_audit_and_outbox(lab):
    ids = [category(lab, f"原{i}") for i in range(2)]
    before = table_counts(lab)
    with pytest.raises(RecordNotFound):
        lab.records.bulk_update("lab.category", [ids[0], 99999999, ids[1]], {"name": "不该保存"}, SYSTEM)
    # the first record was updated, audited and evented before the failure: all of it rolled back
    assert table_counts(lab) == before
    assert [lab.queries.get("lab.category", i, SYSTEM)["name"] for i in ids] == ["原0", "原1"]
    with pytest.raises(ValidationFailed) as info:
        lab.records.bulk_update("lab.category", ids, {"code": "SAME"}, SYSTEM)
    assert "code" in info.value.field_errors
    assert table_counts(lab) == before and [lab.queries.get("lab.category", i, SYSTEM)["code"] for i in ids] == [None, None]


@pytest.mark.parametrize("ids, data, field, words", [
    ([], {"name": "x"}, "ids", "Select at least one record"),
    (["a"], {"name": "x"}, "ids", "Send a list of record ids"),
    ([1], {}, "_schema", "Choose at least one field"),
    ([1], {"name": "x" * 41}, "name", "Longer than maximum length 40"),
    ([1], {"checked_by": "me"}, "checked_by", "read-only"),
])
def test_bulk_update_refuses_bad_requests(lab, ids, data, field, words):
    with pytest.raises(ValidationFailed) as info:
        lab.records.bulk_update("lab.category", ids, data, SYSTEM)
    assert any(words in m for m in info.value.field_errors[field])


def test_bulk_delete_soft_deletes_each_record_with_audit(lab):
    ids = [category(lab, f"删{i}") for i in range(3)]
    assert lab.records.bulk_delete("lab.category", ids, SYSTEM) == 3
    for rid in ids:
        assert audit_rows(lab, "lab.category", rid)[-1]["action"] == "delete"
        with pytest.raises(RecordNotFound):
            lab.queries.get("lab.category", rid, SYSTEM)


def test_the_policy_point_is_asked_before_any_write(lab):
    clerk = Actor(id=None, username="clerk", permissions=frozenset({("read", "entity:lab.category")}))
    before = table_counts(lab)
    with pytest.raises(PermissionDenied) as info:
        lab.records.create("lab.category", {"name": "x"}, clerk)
    assert info.value.status == 403 and "'create' permission on entity:lab.category" in info.value.message
    rid = category(lab, "可读")
    with pytest.raises(PermissionDenied):
        lab.records.update("lab.category", rid, {"name": "y"}, clerk, expected_version=1)
    with pytest.raises(PermissionDenied):
        lab.records.delete("lab.category", rid, clerk)
    assert lab.queries.get("lab.category", rid, clerk)["name"] == "可读"
    assert table_counts(lab)["lab_category"] == before["lab_category"] + 1


@pytest.mark.parametrize("rid", [10**30, -1, 0, "abc", None, 2.5])
def test_impossible_record_ids_are_not_found_without_reaching_sql(lab, rid):
    with pytest.raises(RecordNotFound):
        lab.records.update("lab.category", rid, {"name": "x"}, SYSTEM, expected_version=1)
    with pytest.raises(RecordNotFound):
        lab.records.delete("lab.category", rid, SYSTEM)
    with pytest.raises(RecordNotFound):
        lab.records.restore("lab.category", rid, SYSTEM)
    with pytest.raises(RecordNotFound):
        lab.queries.get("lab.category", rid, SYSTEM)
    assert lab.queries.history("lab.category", rid, SYSTEM) == []
    with pytest.raises(ValidationFailed) as info:
        lab.records.bulk_update("lab.category", [rid], {"name": "x"}, SYSTEM)
    assert info.value.field_errors == {"ids": ["Send a list of record ids."]}


def test_record_ids_given_as_text_work(lab):
    rid = category(lab, "文本编号")
    assert lab.records.update("lab.category", str(rid), {"name": "改"}, SYSTEM, expected_version=1) == 2
    lab.records.delete("lab.category", str(rid), SYSTEM)
    assert audit_rows(lab, "lab.category", rid)[-1]["action"] == "delete"


def test_unknown_entity_is_not_found(lab):
    with pytest.raises(RecordNotFound) as info:
        lab.records.create("lab.nothing", {}, SYSTEM)
    assert "There is no entity 'lab.nothing'" in info.value.message


def test_a_guarded_counter_moves_in_one_statement_with_the_usual_audit_and_event(lab, admin):
    rid = lab.records.create("lab.sample", {"title": "counter", "count": 3}, admin)
    with lab.engine.begin() as conn:
        assert lab.records.adjust_within(conn, "lab.sample", rid, "count", -2, admin, at_least=0, note={"why": "used"}) == 1
    row = lab.queries.get("lab.sample", rid, admin)
    assert (row["count"], row["row_version"]) == (1, 2)
    assert audit_rows(lab, "lab.sample", rid)[-1]["changes"] == {"count": [3, 1], "why": "used"}
    event = outbox_rows(lab, "lab.sample", rid)[-1]
    assert (event["topic"], event["payload"]["changes"]) == ("record.updated", {"count": [3, 1], "why": "used"})


def test_a_refused_counter_guard_writes_nothing(lab, admin):
    rid = lab.records.create("lab.sample", {"title": "guard", "count": 1}, admin)
    audits, events = len(audit_rows(lab, "lab.sample", rid)), len(outbox_rows(lab, "lab.sample", rid))
    with lab.engine.begin() as conn:
        assert lab.records.adjust_within(conn, "lab.sample", rid, "count", -2, admin, at_least=0) is None
    row = lab.queries.get("lab.sample", rid, admin)
    assert (row["count"], row["row_version"]) == (1, 1)
    assert (len(audit_rows(lab, "lab.sample", rid)), len(outbox_rows(lab, "lab.sample", rid))) == (audits, events)
    with pytest.raises(ValueError, match="not a numeric field"), lab.engine.begin() as conn:
        lab.records.adjust_within(conn, "lab.sample", rid, "title", 1, admin)
