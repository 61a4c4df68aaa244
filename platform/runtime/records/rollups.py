"""Rollup fields kept right inside the write that changes their source rows.

A rollup on entity T sums (counts, ...) rows of a source entity S: T's child table rows (matched by
``parent_id``) or S records whose link field points at T. After any write to an S record (create,
update, delete, restore, bulk edits, which all pass through here) the affected T rows are recomputed
with one correlated UPDATE in the same transaction: the old and the new link target, so moving a record
from one parent to another corrects both. Reads never recompute. On PostgreSQL the parent rows are locked
before the UPDATE so concurrent writers cannot count from stale snapshots (SQLite serialises writers).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Iterable, Mapping

from sqlalchemy import Connection, Table, func, select

from ..expr import compile_expression
from ..fields import FilterContext
from ..meta.catalog import Catalog
from ..meta.memo import CatalogMemo
from ..meta.model import EntityDef, FieldDef

_MEMO = CatalogMemo()


def rollups_by_source(catalog: Catalog) -> dict[str, list[tuple[EntityDef, FieldDef]]]:
    """source entity key → [(target entity, rollup field)], computed once per catalog."""
    def build() -> dict[str, list[tuple[EntityDef, FieldDef]]]:
        index: dict[str, list[tuple[EntityDef, FieldDef]]] = {}
        for e in catalog.entities.values():
            for f in e.fields:
                if f.type == "rollup":
                    index.setdefault(f.opt("source"), []).append((e, f))
        return index
    return _MEMO.get(catalog, "by_source", build)


def refresh_after_write(conn: Connection, catalog: Catalog, tables: Mapping[str, Table], entity: EntityDef, record_id: int,
                        changes: Mapping) -> None:
    """Recompute the rollups that ``entity`` record ``record_id`` feeds, and this record's own child-table rollups."""
    index = rollups_by_source(catalog)
    for f in entity.fields:  # this record's own rollups: right from creation, and after its child rows change
        if f.type == "rollup":
            recompute(conn, catalog, tables, entity, f, [record_id])
    pairs = index.get(entity.key, [])
    if not pairs:
        return
    table = tables[entity.key]
    row = conn.execute(select(table).where(table.c.id == record_id)).mappings().first()
    for target, f in pairs:
        link = f.opt("link")
        if not link:
            continue  # child rows are handled through their parent's write above
        ids = {row[link]} if row is not None else set()
        if link in changes and isinstance(changes[link], (list, tuple)) and len(changes[link]) == 2:
            ids.add(changes[link][0])
        recompute(conn, catalog, tables, target, f, [i for i in ids if i is not None])


def _plain(value):
    """A frozen definition value (mapping proxies, tuples) as the dicts and lists a filter tree is."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def aggregate(catalog: Catalog, tables: Mapping[str, Table], target_table: Table, f: FieldDef, dialect: str = "sqlite"):
    """The correlated scalar subquery computing rollup ``f`` for the current row of ``target_table``."""
    src = catalog.entities[f.opt("source")]
    st = tables[src.key].alias("rollup_src")
    key = st.c[f.opt("link")] if f.opt("link") else st.c.parent_id
    conds = [key == target_table.c.id, st.c.deleted_at.is_(None)]
    flt = f.opt("filter")
    if isinstance(flt, str):
        conds.append(compile_expression(flt, src, catalog, result="boolean").to_sql(st, tables=tables))
    elif flt:
        ctx = FilterContext(dialect, getattr(catalog.field_types.get("datetime"), "timezone", "Asia/Shanghai"), dt.datetime.now(dt.timezone.utc))
        from ..query.filters import compile_filter  # here: the query package imports the record service

        conds.append(compile_filter(catalog, src, st, _plain(flt), ctx, tuple(src.field_map)))
    fn = f.opt("function")
    if fn == "count":
        agg = func.count(st.c.id)
    else:
        col = st.c[f.opt("field")]
        aggregates: dict[str, Callable[[Any], Any]] = {"sum": lambda c: func.coalesce(func.sum(c), 0), "min": func.min, "max": func.max, "avg": func.avg}
        agg = aggregates[fn](col)
    return select(agg).where(*conds).scalar_subquery()


def recompute(conn: Connection, catalog: Catalog, tables: Mapping[str, Table], target: EntityDef, f: FieldDef, ids: Iterable[int]) -> None:
    ids = sorted(set(ids))
    if not ids:
        return
    tt = tables[target.key]
    if conn.dialect.name == "postgresql":
        # Lock the parents first (in id order), then recompute in a new statement: under READ COMMITTED that
        # statement's snapshot includes every concurrent writer that held the lock before us, so none is lost.
        # NO KEY UPDATE: the source row's foreign key already holds KEY SHARE on the parent, which this lock
        # does not wait for (FOR UPDATE would deadlock two writers of the same parent).
        conn.execute(select(tt.c.id).where(tt.c.id.in_(ids)).order_by(tt.c.id).with_for_update(key_share=True))
    conn.execute(tt.update().where(tt.c.id.in_(ids)).values({f.name: aggregate(catalog, tables, tt, f, conn.dialect.name)}))


def recompute_field(conn: Connection, catalog: Catalog, tables: Mapping[str, Table], entity: EntityDef, f: FieldDef) -> None:
    """Rollup ``f`` for every row of ``entity`` (a new rollup column; the schema plan runs this)."""
    tt = tables[entity.key]
    conn.execute(tt.update().values({f.name: aggregate(catalog, tables, tt, f, conn.dialect.name)}))


def recompute_all(conn: Connection, catalog: Catalog, tables: Mapping[str, Table]) -> int:
    """Every rollup of every row (to repair after a rollup's definition changed); returns the fields done."""
    done = 0
    for e in catalog.entities.values():
        for f in e.fields:
            if f.type == "rollup":
                recompute_field(conn, catalog, tables, e, f)
                done += 1
    return done
