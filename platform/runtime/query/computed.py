"""Formula and lookup values in QueryService selects.

A formula that compiles to SQL (and every lookup) becomes a labelled column of a subquery over the
entity table, so filters, sorts, keyset cursors and counts use it like a stored column. A formula
that needs Python (ADD_MONTHS, CONCAT of numbers, ...) is evaluated per fetched row; it can be shown
but not filtered or sorted on.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from sqlalchemy import Numeric, Table, null, select, type_coerce
from sqlalchemy.sql import FromClause

from ..expr import CompiledExpression, ExpressionError, NotSqlCompilable, compile_expression
from ..expr.sql import rounded
from ..meta.catalog import Catalog
from ..meta.memo import CatalogMemo
from ..meta.model import EntityDef

_MEMO = CatalogMemo()


@dataclass
class ComputedView:
    table: FromClause  # the entity table, or a subquery adding the computed columns
    python: dict[str, CompiledExpression] = field(default_factory=dict)  # evaluated per row after fetching
    helpers: dict[str, str] = field(default_factory=dict)  # "link.field" → helper column label, for those

    def extra_columns(self, selected) -> list:
        """Columns the Python-only formulas read that the select does not have yet (their fields, lookup helpers)."""
        names = {n for c in self.python.values() for n in c.fields} | set(self.helpers.values())
        have = {c.name for c in selected}
        return [self.table.c[n] for n in sorted(names - have) if n in self.table.c]

    def comparable(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """Fields a filter or sort may use: Python-only formulas are left out."""
        return tuple(n for n in names if n not in self.python)

    def fill(self, rows: list[dict], raw: Sequence[Mapping]) -> None:
        for row, r in zip(rows, raw):
            record = dict(r)
            for path, label in self.helpers.items():
                record[path] = r.get(label)
            for name, compiled in self.python.items():
                if name in row:
                    try:
                        row[name] = compiled.evaluate(record)
                    except ExpressionError:  # e.g. a number grew past the limit: show it as empty, keep the page
                        row[name] = None


def computed_view(catalog: Catalog, entity: EntityDef, tables: Mapping[str, Table], timezone: str,
                  now: dt.datetime | None = None) -> ComputedView:
    table = tables[entity.key]
    fields = [f for f in entity.fields if catalog.type_of(f).computed]
    if not fields:
        return ComputedView(table)
    cols: list[Any] = []
    python: dict[str, Any] = {}
    helpers: dict[str, Any] = {}
    for f in fields:
        compiled = field_expression(catalog, entity, f.name, timezone)
        try:
            col = compiled.to_sql(table, tables=tables, now=now)
            if f.opt("result") == "number":
                col = type_coerce(rounded(col, int(f.opt("scale", 4))), Numeric(38, 10, asdecimal=True))
            cols.append(col.label(f.name))
        except NotSqlCompilable:
            python[f.name] = compiled
            cols.append(null().label(f.name))
            for link, target_field in compiled.lookups:
                label = f"lk__{link}__{target_field}"
                if label not in helpers.values():
                    helpers[f"{link}.{target_field}"] = label
                    lookup = compile_expression(f"{link}.{target_field}", entity, catalog, timezone=timezone)
                    cols.append(lookup.to_sql(table, tables=tables).label(label))
    sub = select(table, *cols).subquery(f"v_{table.name}")
    return ComputedView(sub, python, helpers)


def sql_computed(catalog: Catalog, entity: EntityDef, name: str) -> bool:
    """Whether computed field ``name`` is a column of the select (so it filters and sorts)."""
    f = entity.field_map.get(name)
    if f is None or not catalog.type_of(f).computed:
        return False
    return field_expression(catalog, entity, name).sql_compilable


def field_expression(catalog: Catalog, entity: EntityDef, name: str, timezone: str = "Asia/Shanghai") -> CompiledExpression:
    """A formula's or lookup's expression, compiled once per catalog."""
    f = entity.field(name)
    return _MEMO.get(catalog, (entity.key, name, timezone),
                     lambda: compile_expression(f.opt("expression", ""), entity, catalog, timezone=timezone))
