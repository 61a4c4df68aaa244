"""``compile_expression``: parse, type-check against an entity, and hand back a ``CompiledExpression``."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from sqlalchemy import FromClause, Table
from sqlalchemy.sql import ColumnElement

from ..i18n_text import text
from ..meta.model import EntityDef
from .check import Bound, Checker, entities_of
from .errors import ExpressionError, NotSqlCompilable
from .evaluate import Evaluator
from .parser import parse
from .sql import SqlCompiler
from .types import RESULT_TYPES, XType


@dataclass(frozen=True)
class CompiledExpression:
    source: str
    entity: EntityDef
    type: XType
    tree: Bound
    timezone: str = "Asia/Shanghai"

    @property
    def result_kind(self) -> str:
        return self.type.kind

    @property
    def fields(self) -> frozenset[str]:
        """Names of this entity's fields the expression reads (the first step of a lookup path included)."""
        return frozenset(b.path[0] for b in _walk(self.tree) if b.kind == "field")

    @property
    def lookups(self) -> frozenset[tuple[str, str]]:
        """``(link field, target field)`` pairs the expression reads through links."""
        return frozenset((b.path[0], b.path[1]) for b in _walk(self.tree) if b.kind == "field" and len(b.path) == 2)

    def evaluate(self, record: Mapping[str, Any], *, now: dt.datetime | None = None) -> Any:
        """The value for one record. Lookup values are read from ``record["link.field"]``, or from
        ``record["link"]`` when that is a dict of the linked record's values."""
        return Evaluator(record, _now(now), ZoneInfo(self.timezone)).eval(self.tree)

    def to_sql(self, table: FromClause, *, tables: Mapping[str, Table] | None = None, now: dt.datetime | None = None) -> ColumnElement:
        """A Core expression over ``table`` (``tables`` by entity key for lookups); raises ``NotSqlCompilable``."""
        return SqlCompiler(table, tables, _now(now), ZoneInfo(self.timezone)).top(self.tree)

    @property
    def sql_compilable(self) -> bool:
        """Whether ``to_sql`` would succeed (given the linked tables for lookups)."""
        try:
            SqlCompiler(None, None, _now(None), ZoneInfo(self.timezone)).top(self.tree)
            return True
        except NotSqlCompilable:
            return False


def _walk(b: Bound):
    yield b
    for a in b.args:
        yield from _walk(a)


def _now(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.timezone.utc)
    return now if now.tzinfo else now.replace(tzinfo=dt.timezone.utc)


def compile_expression(source: str, entity: EntityDef, catalog: Any = None, *, result: str | None = None,
                       timezone: str = "Asia/Shanghai") -> CompiledExpression:
    """Parse and type-check ``source`` against ``entity``. ``catalog`` (a Catalog or ``{key: EntityDef}``)
    resolves lookups through links. ``result`` ("boolean", "number", ...) is the type the caller needs."""
    tree = Checker(entity, entities_of(catalog)).check(parse(source))
    if result is not None:
        want = RESULT_TYPES[result]
        if tree.type.kind not in (want.kind, "null"):
            raise ExpressionError(text("The expression gives {got}, but {want} is needed here.", "表达式的结果是{got}，但此处需要{want}。",
                                       got=tree.type.label, want=want.label), 0)
    return CompiledExpression(source, entity, tree.type, tree, timezone)
