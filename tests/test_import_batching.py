"""The batched write path's fast parts: ids drawn up front, COPY / executemany inserts, the partial loader, and one
bad row in a batch reported alone while the rest land with their own audit entries and events."""
from __future__ import annotations

import datetime as dt

import pytest
from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from crmkit.runtime.audit.verify import verify_chain
from crmkit.runtime.db import write_transaction
from crmkit.runtime.imports import ImportEngine
from crmkit.runtime.imports.actor import actor_by_username
from crmkit.runtime.imports.tables import import_error
from crmkit.runtime.records.batch import allocate_ids
from crmkit.runtime.records.validation import load_partial
from crmkit.runtime.storage import platform_tables as pt
from crmkit.runtime.storage.bulk_insert import insert_rows

from import_support import member_rows, members, write_csv


@pytest.fixture
def admin(services):
    return actor_by_username(services.engine, "admin")


def member_table(services):
    return services.records.table_cache.tables(services.store.catalog())["membership.member"]


def counts(services):
    with services.engine.connect() as conn:
        audit = conn.execute(select(func.count()).select_from(pt.audit).where(pt.audit.c.category == "record",
                                                                               pt.audit.c.entity == "membership.member")).scalar()
        outbox = conn.execute(select(func.count()).select_from(pt.outbox).where(pt.outbox.c.entity == "membership.member")).scalar()
    return audit, outbox


def test_one_bad_row_in_a_batch_is_reported_alone_and_the_rest_land_with_audit_and_events(services, admin, tmp_path):
    rows = member_rows(25)
    rows[13][1] = "12345"  # file row 15: not a mobile number
    path = write_csv(tmp_path / "m.csv", rows)
    engine = ImportEngine(services)
    run_id = engine.create_run(path, "membership.member", admin, key="mobile", batch_size=25)  # one batch
    s = engine.run(run_id, admin)
    assert (s.created, s.errors, s.skipped) == (24, 1, 0)
    with services.engine.connect() as conn:
        errs = conn.execute(select(import_error).where(import_error.c.run_id == run_id)).mappings().all()
    assert [(e["row_number"], e["messages"][0]["column"]) for e in errs] == [(15, "手机号")] and errs[0]["cells"] == rows[13]
    stored = members(services)
    assert set(stored) == {r[1] for i, r in enumerate(rows) if i != 13}
    # Every stored row has exactly one audit entry and one event, chained like single writes.
    assert counts(services) == (24, 24)
    with services.engine.connect() as conn:
        audited = set(conn.execute(select(pt.audit.c.record_id).where(pt.audit.c.category == "record", pt.audit.c.entity == "membership.member")).scalars())
        events = conn.execute(select(pt.outbox.c.record_id, pt.outbox.c.payload).where(pt.outbox.c.entity == "membership.member")).all()
    assert audited == {r["id"] for r in stored.values()} == {rid for rid, _ in events}
    # The ids drawn up front belong to the rows they were given to: each event names the record's own values.
    by_id = {r["id"]: r for r in stored.values()}
    assert all(payload["changes"]["mobile"][1] == by_id[rid]["mobile"] for rid, payload in events)
    with services.engine.connect() as conn:
        assert verify_chain(conn).ok


def test_write_many_results_carry_the_ids_of_their_own_rows(services, admin):
    items = [{"name": f"甲{i}", "mobile": f"1370000000{i}", "email": f"a{i}@example.com", "joined_on": "2024-03-05"} for i in range(5)]
    items.insert(2, {"name": "", "mobile": "13800000000", "joined_on": "2024-03-05"})  # refused: name is required
    results = services.records.write_many("membership.member", items, admin)
    assert [r.action for r in results] == ["created", "created", "error", "created", "created", "created"]
    assert results[2].id is None and list(results[2].errors) == ["name"]
    stored = {r["id"]: r for r in members(services).values()}
    for item, r in zip(items, results):
        if r.action == "created":
            assert stored[r.id]["mobile"] == item["mobile"] and stored[r.id]["name"] == item["name"]
    # A single create afterwards takes the next id: the ids drawn for the batch left the id sequence consistent.
    new_id = services.records.create("membership.member", {"name": "乙", "mobile": "13600000000", "joined_on": "2024-03-05"}, admin)
    assert new_id > max(r.id for r in results if r.id)
    assert counts(services) == (6, 6)


@pytest.mark.postgres_only
def test_a_batch_plans_its_lookups_for_their_values_and_leaves_the_connection_as_it_was(services, admin):
    """A generic plan made while the table was small (a sequential scan against 1,000 keys) made imports 4× slower;
    the batch asks for custom plans, for its own transaction only."""
    seen = []
    items = [{"name": f"丙{i}", "mobile": f"1350000000{i}", "joined_on": "2024-03-05"} for i in range(3)]
    results = services.records.write_many("membership.member", items, admin, mode="upsert", key="mobile",
                                          within=lambda conn, _: seen.append(conn.execute(select(func.current_setting("plan_cache_mode"))).scalar()))
    assert [r.action for r in results] == ["created"] * 3 and seen == ["force_custom_plan"]
    with services.engine.connect() as conn:  # pooled connections keep the server's default
        assert conn.execute(select(func.current_setting("plan_cache_mode"))).scalar() == "auto"


def test_allocate_ids_are_fresh_consecutive_on_sqlite_and_unused_on_postgresql(services, admin):
    table = member_table(services)
    services.records.create("membership.member", {"name": "乙", "mobile": "13600000000", "joined_on": "2024-03-05"}, admin)
    with write_transaction(services.engine) as conn:
        top = conn.execute(select(func.max(table.c.id))).scalar()
        ids = allocate_ids(conn, table, 3)
    assert len(set(ids)) == 3 and min(ids) > top
    if services.engine.dialect.name == "sqlite":
        assert ids == [top + 1, top + 2, top + 3]


def test_insert_rows_reports_a_unique_violation_as_an_integrity_error_and_keeps_nothing(services, admin):
    table = member_table(services)
    now = dt.datetime.now(dt.timezone.utc)
    row = {"name": "丙", "mobile": "13500000000", "created_at": now, "updated_at": now, "row_version": 1}
    with pytest.raises(IntegrityError):
        with write_transaction(services.engine) as conn:
            insert_rows(conn, table, [dict(row, id=900001), dict(row, id=900002)])  # the same mobile twice
    assert members(services) == {}
    with write_transaction(services.engine) as conn:
        insert_rows(conn, table, [dict(row, id=900001)])
    assert members(services)["13500000000"]["created_at"] == now  # aware datetimes go through the column type


def test_insert_rows_writes_json_columns_as_json(services, admin):
    now = dt.datetime.now(dt.timezone.utc)
    payload = {"entity": "x", "changes": {"name": [None, "引号\"和\\反斜杠"]}, "n": None}
    with write_transaction(services.engine) as conn:
        insert_rows(conn, pt.outbox, [{"created_at": now, "topic": "record.created", "entity": "x", "record_id": 1, "payload": payload}])
    with services.engine.connect() as conn:
        assert conn.execute(select(pt.outbox.c.payload).where(pt.outbox.c.entity == "x")).scalar_one() == payload


@pytest.mark.parametrize("data", [
    {"name": " 丁 ", "mobile": "13900000009", "joined_on": "2024年3月5日", "total_spent": "12.50"},
    {"name": "戊", "joined_on": "2024-02-30", "mobile": "123"},  # two field errors
    {"name": "己", "nonsense": 1, "joined_on": "2024-03-05"},  # an unknown key
    {"birthday": "1990/01/02", "email": "NOT-LOWER@EXAMPLE.COM", "gender": "男"},
])
def test_load_partial_matches_marshmallows_partial_load(services, data):
    catalog = services.store.catalog()
    entity = catalog.entity("membership.member")
    schema = services.records.schemas.schema(catalog, entity)
    try:
        expected, expected_errors = schema.load(data, partial=True), {}
    except ValidationError as exc:
        expected, expected_errors = exc.valid_data, exc.normalized_messages()
    assert load_partial(schema, data) == (expected, expected_errors)


def test_batched_creates_start_in_the_workflows_initial_state_like_single_creates(services, admin):
    data = {"name": "庚", "mobile": "13300000000", "source": "store"}
    catalog = services.store.catalog()
    entity = catalog.entity("membership.application")
    options = [o["value"] if isinstance(o, dict) else o for o in entity.field("source").opt("options")]
    data["source"] = options[0]
    single = services.records.create("membership.application", data, admin)
    [r] = services.records.write_many("membership.application", [dict(data, mobile="13300000001")], admin)
    assert r.action == "created", r.errors
    table = services.records.table_cache.tables(catalog)["membership.application"]
    with services.engine.connect() as conn:
        states = dict(conn.execute(select(table.c.id, table.c.workflow_state).where(table.c.id.in_([single, r.id]))).all())
    assert states[r.id] == states[single] == catalog.workflow_of(entity).initial.name
