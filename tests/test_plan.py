"""Schema plans: plan = diff(live database, desired definitions); applying is a separate step,
and destructive or lossy steps list their affected rows and need confirmation."""
from __future__ import annotations

import copy

import pytest
from sqlalchemy import inspect, select, text

from core_support import CATEGORY, SAMPLE, SAMPLE_LINE, fresh_services, lab_documents, publish
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import PlanRefused
from crmkit.runtime.meta.compile import compile_documents
from crmkit.runtime.storage import platform_tables as pt
from crmkit.runtime.storage.plan import Planner, apply_plan

SAMPLE_STORED = [f["name"] for f in SAMPLE["fields"] if f["type"] != "child_table"]


@pytest.fixture
def services(databases, tmp_path_factory):
    s = fresh_services(databases, tmp_path_factory)
    yield s
    s.engine.dispose()


def desired(services, *entities):
    """A catalog of the lab app with these entity bodies, compiled but not stored."""
    return compile_documents(lab_documents(*entities), services.field_types)


def plan_for(services, *entities):
    return Planner(services.engine, desired(services, *entities)).plan()


def columns(services, table):
    return {c["name"]: c for c in inspect(services.engine).get_columns(table)}


def foreign_keys(services, table):
    return {tuple(fk["constrained_columns"]): (fk["referred_table"], tuple(fk["referred_columns"])) for fk in inspect(services.engine).get_foreign_keys(table)}


def with_fields(body, *, drop=(), add=(), change=None):
    b = copy.deepcopy(body)
    b["fields"] = [f for f in b["fields"] if f["name"] not in drop] + list(add)
    for f in b["fields"]:
        f.update((change or {}).get(f["name"], {}))
    return b


def test_planning_changes_nothing_and_applying_creates_real_tables(services):
    plan = plan_for(services, CATEGORY, SAMPLE, SAMPLE_LINE)
    assert [(s.op, s.table) for s in plan.steps] == [
        ("create_table", "lab_category"), ("create_table", "lab_sample"), ("create_table", "lab_sample_line"),
    ]
    assert not plan.needs_confirmation and "CREATE TABLE lab_sample" in plan.steps[1].sql
    assert "Create table lab_sample for lab.sample" in plan.render()
    # planning alone touched nothing
    assert not {"lab_category", "lab_sample", "lab_sample_line"} & set(inspect(services.engine).get_table_names())
    with services.engine.connect() as conn:
        assert conn.execute(select(pt.applied_entity)).all() == []

    assert apply_plan(services.engine, plan) == 3
    cols = columns(services, "lab_sample")
    assert set(SAMPLE_STORED) <= set(cols)
    assert {"id", "created_at", "updated_at", "created_by", "owner_id", "row_version", "deleted_at", "workflow_state"} <= set(cols)
    assert "lines" not in cols  # a child table has no column on its parent
    assert all(cols[n]["nullable"] for n in SAMPLE_STORED)
    type_names = {n: str(cols[n]["type"]).upper() for n in ("count", "day", "title", "active", "ratio")}
    assert type_names["count"] == "BIGINT" and type_names["day"] == "DATE" and type_names["title"].startswith("VARCHAR")
    assert type_names["ratio"].startswith("NUMERIC")
    fks = foreign_keys(services, "lab_sample")
    assert fks[("category",)] == ("lab_category", ("id",))
    assert fks[("handler",)] == ("ab_user", ("id",))
    assert fks[("org",)] == ("crmkit_org_unit", ("id",))
    line_cols = columns(services, "lab_sample_line")
    assert {"parent_id", "sort_order", "item", "qty"} <= set(line_cols) and not line_cols["parent_id"]["nullable"]
    assert foreign_keys(services, "lab_sample_line")[("parent_id",)] == ("lab_sample", ("id",))
    assert plan_for(services, CATEGORY, SAMPLE, SAMPLE_LINE).empty


def test_plan_is_empty_after_apply_and_records_stable_ids(services):
    publish(services, lab_documents())
    assert Planner(services.engine, services.store.catalog()).plan().steps == []
    with services.engine.connect() as conn:
        applied = {r.field_id: r.column_name for r in conn.execute(select(pt.applied_field).where(pt.applied_field.c.entity_id == "ent_lab_sample"))}
    assert applied["fld_s_title"] == "title" and applied["fld_s_category"] == "category"
    assert "fld_s_lines" not in applied


def test_adding_a_field_adds_a_nullable_column_and_keeps_rows(services):
    publish(services, lab_documents())
    rid = services.records.create("lab.category", {"name": "蔬菜", "code": "VEG"}, SYSTEM)
    extra = {"id": "fld_cat_rank", "name": "rank", "type": "integer", "label": {"zh": "排序", "en": "Rank"}}
    plan = plan_for(services, with_fields(CATEGORY, add=[extra]), SAMPLE, SAMPLE_LINE)
    assert [(s.op, s.table) for s in plan.steps] == [("add_column", "lab_category")]
    assert not plan.needs_confirmation and "rank" in plan.steps[0].description
    assert "rank" not in columns(services, "lab_category")  # not before apply
    apply_plan(services.engine, plan)
    assert columns(services, "lab_category")["rank"]["nullable"]
    assert plan_for(services, with_fields(CATEGORY, add=[extra]), SAMPLE, SAMPLE_LINE).empty
    services.store.save(lab_documents(with_fields(CATEGORY, add=[extra]), SAMPLE, SAMPLE_LINE))
    row = services.queries.get("lab.category", rid, SYSTEM)
    assert (row["name"], row["rank"]) == ("蔬菜", None)
    services.records.update("lab.category", rid, {"rank": 3}, SYSTEM, expected_version=1)
    assert services.queries.get("lab.category", rid, SYSTEM)["rank"] == 3


def test_removing_a_field_is_destructive_counts_rows_and_needs_confirmation(services):
    publish(services, lab_documents())
    for i, code in enumerate(["A", "B", None]):
        services.records.create("lab.category", {"name": f"c{i}", "code": code}, SYSTEM)
    plan = plan_for(services, with_fields(CATEGORY, drop=["code"]), SAMPLE, SAMPLE_LINE)
    [step] = plan.steps
    assert (step.op, step.destructive, step.affected_rows) == ("drop_column", True, 2)
    assert plan.to_dict()["needs_confirmation"] is True and "[DESTRUCTIVE] (2 rows affected)" in plan.render()
    with pytest.raises(PlanRefused) as info:
        apply_plan(services.engine, plan)
    assert info.value.status == 409 and "Drop column lab_category.code" in info.value.message and "(2 rows)" in info.value.message
    assert "code" in columns(services, "lab_category")  # refused means untouched
    with services.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM lab_category WHERE code IS NOT NULL")).scalar_one() == 2
    apply_plan(services.engine, plan, confirm=True)
    assert "code" not in columns(services, "lab_category")
    assert plan_for(services, with_fields(CATEGORY, drop=["code"]), SAMPLE, SAMPLE_LINE).empty


def test_narrowing_a_type_is_lossy_with_the_rows_that_do_not_fit(services):
    publish(services, lab_documents())
    for name in ["短", "刚好五个字", "这个名字超过五个字了", "another long one"]:
        services.records.create("lab.category", {"name": name}, SYSTEM)
    narrow = with_fields(CATEGORY, change={"name": {"max_length": 5}})
    plan = plan_for(services, narrow, SAMPLE, SAMPLE_LINE)
    [step] = plan.steps
    assert (step.op, step.lossy, step.affected_rows) == ("change_type", True, 2)
    assert "2 rows hold values that cannot be converted" in step.description
    with pytest.raises(PlanRefused):
        apply_plan(services.engine, plan)
    with services.engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT name FROM lab_category")).scalars()) == sorted(["短", "刚好五个字", "这个名字超过五个字了", "another long one"])
    apply_plan(services.engine, plan, confirm=True)
    with services.engine.connect() as conn:
        names = conn.execute(text("SELECT name FROM lab_category ORDER BY id")).scalars().all()
    assert names == ["短", "刚好五个字", None, None]
    assert plan_for(services, narrow, SAMPLE, SAMPLE_LINE).empty


def test_widening_a_type_converts_every_value_without_confirmation(services):
    publish(services, lab_documents())
    services.records.create("lab.category", {"name": "水果", "code": "F"}, SYSTEM)
    wide = with_fields(CATEGORY, change={"name": {"max_length": 80}})
    plan = plan_for(services, wide, SAMPLE, SAMPLE_LINE)
    [step] = plan.steps
    assert (step.op, step.lossy, step.affected_rows) == ("change_type", False, 0)
    apply_plan(services.engine, plan)
    with services.engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM lab_category")).scalar_one() == "水果"
    assert plan_for(services, wide, SAMPLE, SAMPLE_LINE).empty


def test_changing_text_to_integer_counts_values_that_are_not_numbers(services):
    publish(services, lab_documents())
    for code in ["12", "-7", "X1", None]:
        services.records.create("lab.category", {"name": "n", "code": code}, SYSTEM)
    to_int = with_fields(CATEGORY, change={"code": {"type": "integer", "max_length": None}})
    to_int["fields"][1].pop("max_length")
    plan = plan_for(services, to_int, SAMPLE, SAMPLE_LINE)
    [step] = plan.steps
    assert (step.op, step.lossy, step.affected_rows) == ("change_type", True, 1)
    apply_plan(services.engine, plan, confirm=True)
    services.store.save(lab_documents(to_int, SAMPLE, SAMPLE_LINE))
    rows = services.queries.list("lab.category", SYSTEM, sort=["id"]).rows
    assert [r["code"] for r in rows] == [12, -7, None, None]


def test_renaming_a_field_keeps_its_column_data(services):
    publish(services, lab_documents())
    rid = services.records.create("lab.category", {"name": "饮料", "code": "DRINK"}, SYSTEM)
    renamed = with_fields(CATEGORY, change={"code": {"name": "sku"}})
    plan = plan_for(services, renamed, SAMPLE, SAMPLE_LINE)
    assert [s.op for s in plan.steps if s.op in ("rename_column", "add_column", "drop_column")] == ["rename_column"]
    assert not plan.needs_confirmation
    apply_plan(services.engine, plan)
    services.store.save(lab_documents(renamed, SAMPLE, SAMPLE_LINE))
    assert services.queries.get("lab.category", rid, SYSTEM)["sku"] == "DRINK"
    assert plan_for(services, renamed, SAMPLE, SAMPLE_LINE).empty


def test_a_new_index_is_planned_and_created(services):
    publish(services, lab_documents())
    indexed = copy.deepcopy(SAMPLE)
    indexed["indexes"] = [{"fields": ["day", "count"]}]
    plan = plan_for(services, CATEGORY, indexed, SAMPLE_LINE)
    [step] = plan.steps
    assert step.op == "create_index" and "ix_lab_sample_day_count" in step.description
    apply_plan(services.engine, plan)
    assert "ix_lab_sample_day_count" in {ix["name"] for ix in inspect(services.engine).get_indexes("lab_sample")}
    assert plan_for(services, CATEGORY, indexed, SAMPLE_LINE).empty


def test_dropping_an_entity_is_destructive_with_its_row_count(services):
    publish(services, lab_documents())
    cid = services.records.create("lab.category", {"name": "x"}, SYSTEM)
    services.records.create("lab.sample", {"title": "a", "category": cid, "lines": [{"item": "i"}]}, SYSTEM)
    services.records.create("lab.sample", {"title": "b"}, SYSTEM)
    no_sample = with_fields(CATEGORY)
    catalog = compile_documents(lab_documents(no_sample), services.field_types)
    plan = Planner(services.engine, catalog).plan()
    drops = {s.table: s.affected_rows for s in plan.steps if s.op == "drop_table"}
    assert drops == {"lab_sample": 2, "lab_sample_line": 1}
    assert all(s.destructive for s in plan.steps if s.op == "drop_table")
    with pytest.raises(PlanRefused):
        apply_plan(services.engine, plan)
    assert "lab_sample" in inspect(services.engine).get_table_names()


def test_a_unique_index_over_duplicate_values_is_blocked_until_the_data_is_fixed(services):
    publish(services, lab_documents())
    ids = [services.records.create("lab.category", {"name": n}, SYSTEM) for n in ["重复", "重复", "唯一", "重复"]]
    unique_name = with_fields(CATEGORY, change={"name": {"unique": True}})
    plan = plan_for(services, unique_name, SAMPLE, SAMPLE_LINE)
    [step] = plan.steps
    assert step.op == "create_index" and step.affected_rows == 3 and "3 rows share a value of name" in step.blocked
    assert "[BLOCKED: 3 rows share a value of name" in plan.render() and plan.to_dict()["steps"][0]["blocked"] == step.blocked
    for confirm in (False, True):  # confirming does not help: the data has to change
        with pytest.raises(PlanRefused) as info:
            apply_plan(services.engine, plan, confirm=confirm)
        assert "cannot be applied until the data changes" in info.value.message
    # the step itself fails cleanly too (no half-built index left behind on PostgreSQL)
    with services.engine.connect() as conn:
        with pytest.raises(PlanRefused):
            step.run(conn.execution_options(isolation_level="AUTOCOMMIT"))
    assert "uq_lab_category_name" not in {ix["name"] for ix in inspect(services.engine).get_indexes("lab_category")}
    assert [s.op for s in plan_for(services, unique_name, SAMPLE, SAMPLE_LINE).steps] == ["create_index"]
    # a soft-deleted duplicate does not count; renaming the other one clears the way
    services.records.delete("lab.category", ids[0], SYSTEM)
    services.records.update("lab.category", ids[1], {"name": "重复二"}, SYSTEM, expected_version=1)
    plan = plan_for(services, unique_name, SAMPLE, SAMPLE_LINE)
    assert plan.steps[0].blocked is None
    apply_plan(services.engine, plan)
    assert plan_for(services, unique_name, SAMPLE, SAMPLE_LINE).empty
