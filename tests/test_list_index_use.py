"""Sorted list pages are served by an index scan in either direction, on both databases.

NULLs sort as the smallest value (first ascending, last descending); SQLite's indexes have that
order natively and PostgreSQL's sort indexes are built NULLS FIRST, so neither needs a full sort.
"""
from __future__ import annotations

import pytest
from sqlalchemy import event, text

from crmkit.runtime.actor import SYSTEM

MEMBER = "membership.member"


def list_statement(services, sort, cursor=None):
    """The SQL and parameters the query service runs for one page of members."""
    seen = []

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if "FROM membership_member" in statement and "ORDER BY" in statement:
            seen.append((statement, parameters))

    event.listen(services.engine, "before_cursor_execute", on_execute)
    try:
        services.queries.list(MEMBER, SYSTEM, sort=sort, limit=5, count="none", labels=False, cursor=cursor)
    finally:
        event.remove(services.engine, "before_cursor_execute", on_execute)
    assert len(seen) == 1, seen
    return seen[0]


def plan_of(services, sql, params) -> str:
    with services.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET enable_seqscan = off"))
            conn.execute(text("SET enable_sort = off"))
            rows = conn.exec_driver_sql("EXPLAIN " + sql, params).all()
        else:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all()
    return "\n".join(" ".join(str(c) for c in r) for r in rows)


@pytest.mark.parametrize("sort", [["-joined_on"], ["joined_on"]], ids=["descending", "ascending"])
def test_a_sorted_page_walks_the_index_without_sorting_the_table(services, sort):
    for i in range(30):
        services.records.create(MEMBER, {"name": f"会员{i}", "mobile": f"139{i:08d}", "joined_on": f"2024-01-{i % 28 + 1:02d}"}, SYSTEM)
    sql, params = list_statement(services, sort)
    plan = plan_of(services, sql, params)
    if services.engine.dialect.name == "postgresql":
        assert "ix_membership_member_joined_on" in plan, plan
        assert "Index Scan" in plan and "Seq Scan" not in plan, plan
        nodes = [line.strip().removeprefix("->").strip() for line in plan.splitlines()]
        assert not [n for n in nodes if n.startswith("Sort  (")], plan  # at most an incremental sort of ties in index order
    else:
        assert "ix_membership_member_joined_on" in plan, plan
        assert "USE TEMP B-TREE FOR ORDER BY" not in plan or "RIGHT PART" in plan, plan


def test_postgresql_sort_indexes_are_nulls_first(services):
    if services.engine.dialect.name != "postgresql":
        with services.engine.connect() as conn:
            sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'ix_membership_member_joined_on'")).scalar_one()
        assert "NULLS" not in sql.upper()  # SQLite has no NULLS clause in indexes; its order is NULLs first already
        return
    with services.engine.connect() as conn:
        indexdef = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_membership_member_joined_on'")).scalar_one()
    assert "NULLS FIRST" in indexdef


@pytest.mark.parametrize("sort", [["-joined_on"], ["joined_on"]], ids=["descending", "ascending"])
def test_a_deep_page_starts_at_the_cursor_through_index_conditions(services, sort):
    """The rows after a cursor are an OR (date beyond d, or date = d and id beyond i, or no date); each part
    runs as its own index range, so a deep page costs what the first page costs."""
    for i in range(30):
        services.records.create(MEMBER, {"name": f"会员{i}", "mobile": f"139{i:08d}", "joined_on": f"2024-01-{i % 28 + 1:02d}"}, SYSTEM)
    first = services.queries.list(MEMBER, SYSTEM, sort=sort, limit=5, count="none", labels=False)
    second = services.queries.list(MEMBER, SYSTEM, sort=sort, limit=5, count="none", labels=False, cursor=first.next_cursor)
    everything = services.queries.list(MEMBER, SYSTEM, sort=sort, limit=200, count="none", labels=False).rows
    assert [r["id"] for r in first.rows + second.rows] == [r["id"] for r in everything[:10]]
    sql, params = list_statement(services, sort, cursor=first.next_cursor)
    plan = plan_of(services, sql, params)
    if services.engine.dialect.name == "postgresql":
        assert any("Index Cond" in line and "joined_on" in line for line in plan.splitlines()), plan  # a range, not a filter
        assert "Seq Scan" not in plan, plan
    else:
        assert "ix_membership_member_joined_on (joined_on" in plan, plan  # SQLite: SEARCH ... USING INDEX (joined_on<?)
