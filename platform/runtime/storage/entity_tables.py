"""Entity definitions → SQLAlchemy tables: system columns plus a real column per stored field."""
from __future__ import annotations

import hashlib

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, MetaData, String, Table, text

from ..meta.catalog import Catalog
from ..meta.model import EntityDef, FieldDef
from . import fab_tables, platform_tables
from .types import UTCDateTime

SYSTEM_COLUMNS = (
    "id", "created_at", "updated_at", "created_by", "updated_by", "owner_id", "org_unit_id",
    "row_version", "deleted_at", "deleted_by", "workflow_state",
)
CHILD_COLUMNS = ("parent_id", "sort_order")


def pk_type():
    # INTEGER PRIMARY KEY is SQLite's rowid alias; BIGINT everywhere else.
    return BigInteger().with_variant(Integer(), "sqlite")


def index_name(table: str, cols: tuple[str, ...], prefix: str = "ix") -> str:
    name = f"{prefix}_{table}_{'_'.join(cols)}"
    if len(name) <= 60:
        return name
    return f"{prefix}_{table[:30]}_{hashlib.sha1(name.encode()).hexdigest()[:12]}"


def system_columns(entity: EntityDef, catalog: Catalog) -> list[Column]:
    cols = [
        Column("id", pk_type(), primary_key=True, autoincrement=True),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
        Column("created_by", Integer),
        Column("updated_by", Integer),
        Column("owner_id", Integer),
        Column("org_unit_id", BigInteger),
        Column("row_version", Integer, nullable=False, server_default=text("1")),
        Column("deleted_at", UTCDateTime()),
        Column("deleted_by", Integer),
        Column("workflow_state", String(64)),
    ]
    if entity.is_child and entity.parent:
        parent = catalog.entities[entity.parent]
        cols += [
            Column("parent_id", BigInteger, ForeignKey(f"{parent.table_name}.id", ondelete="CASCADE"), nullable=False),
            Column("sort_order", Integer, nullable=False, server_default=text("0")),
        ]
    return cols


def field_column(f: FieldDef, catalog: Catalog) -> Column | None:
    ft = catalog.type_of(f)
    if not ft.stored:
        return None
    fk = ft.foreign_key(f)
    args = [ForeignKey(fk, ondelete="SET NULL")] if fk else []
    return Column(f.name, ft.sql_type(f), *args, nullable=True, info={"field_id": f.id})


def entity_indexes(entity: EntityDef, catalog: Catalog) -> list[tuple[str, tuple[str, ...], bool]]:
    """(name, columns, unique) for every index an entity table should have."""
    t = entity.table_name
    out: list[tuple[str, tuple[str, ...], bool]] = [(index_name(t, ("created_at", "id")), ("created_at", "id"), False)]
    if entity.is_child:
        out.append((index_name(t, ("parent_id", "sort_order")), ("parent_id", "sort_order"), False))
    title = entity.field(entity.title_field)
    if catalog.type_of(title).sortable and catalog.type_of(title).stored:
        out.append((index_name(t, (title.name, "id")), (title.name, "id"), False))
    for f in entity.fields:
        ft = catalog.type_of(f)
        if f.unique and ft.stored:
            out.append((index_name(t, (f.name,), "uq"), (f.name,), True))
        elif ft.foreign_key(f):
            out.append((index_name(t, (f.name,)), (f.name,), False))
    for ix in entity.indexes:
        out.append((index_name(t, ix.fields, "uq" if ix.unique else "ix"), ix.fields, ix.unique))
    seen, unique_out = set(), []
    for item in out:
        if item[0] not in seen:
            seen.add(item[0])
            unique_out.append(item)
    return unique_out


def make_index(table: Table, name: str, cols: tuple[str, ...], unique: bool) -> Index:
    """Unique indexes ignore soft-deleted rows, so a deleted record does not block its value.

    Other indexes serve sorted lists, which order NULLs as the smallest value (query.service). That is
    SQLite's index order; on PostgreSQL nullable columns are indexed ``NULLS FIRST`` for the same order,
    so a forward scan serves ``ASC NULLS FIRST`` and a backward scan ``DESC NULLS LAST``.
    """
    kw: dict = {}
    if unique:
        where = table.c.deleted_at.is_(None)
        kw = {"sqlite_where": where, "postgresql_where": where}
    else:
        nullable = {c: "NULLS FIRST" for c in cols if table.c[c].nullable}
        if nullable:
            kw = {"postgresql_ops": nullable}
    return Index(name, *[table.c[c] for c in cols], unique=unique, **kw)


def build_tables(catalog: Catalog) -> tuple[MetaData, dict[str, Table]]:
    """One MetaData holding every entity table, plus the platform tables they reference."""
    md = MetaData()
    platform_tables.org_unit.to_metadata(md)
    fab_tables.ab_user.to_metadata(md)
    tables: dict[str, Table] = {}
    for entity in _parents_first(catalog):
        cols = system_columns(entity, catalog)
        cols += [c for c in (field_column(f, catalog) for f in entity.fields) if c is not None]
        table = Table(entity.table_name, md, *cols, info={"entity": entity.key, "entity_id": entity.id})
        for name, ix_cols, unique in entity_indexes(entity, catalog):
            make_index(table, name, ix_cols, unique)
        tables[entity.key] = table
    return md, tables


def _parents_first(catalog: Catalog) -> list[EntityDef]:
    """Entities ordered so that link targets and parents come before what references them."""
    order: list[EntityDef] = []
    visiting: set[str] = set()

    def visit(key: str):
        if key in visiting or any(e.key == key for e in order):
            return
        visiting.add(key)
        e = catalog.entities[key]
        deps = [f.opt("target") for f in e.fields if f.type == "link"] + ([e.parent] if e.parent else [])
        for d in deps:
            if d in catalog.entities and d != key:
                visit(d)
        order.append(e)

    for key in sorted(catalog.entities):
        visit(key)
    return order
