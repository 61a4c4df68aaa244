"""Compilation to a SQLAlchemy Core expression over the entity table.

Only what gives the same answer on SQLite and PostgreSQL compiles; anything else raises
``NotSqlCompilable`` (the caller then evaluates in Python). Constants such as TODAY() become bound
parameters computed once, so SQL and Python agree on "now". Every literal is a bound parameter.
Per-dialect spellings go through ``Dialected``, one SQL element with a variant per dialect.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from sqlalchemy import (Boolean, Date, Float, Integer, Numeric, String, FromClause, Table, and_, case, cast, column, false, func, literal, not_, null, or_,
                        select, true, type_coerce)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.expression import ColumnClause
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeEngine

from ..i18n_text import text
from ..storage.types import UTCDateTime
from .check import Bound
from .errors import NotSqlCompilable
from .evaluate import Evaluator

RESULT_SQL_TYPES: dict[str, TypeEngine[Any]] = {"number": Numeric(38, 10, asdecimal=True), "text": String(), "boolean": Boolean(), "date": Date(), "datetime": UTCDateTime()}


class Dialected(ColumnClause):
    """One expression with a spelling per dialect (``default`` for the rest).

    Its cache key includes every variant, so statements holding one stay in SQLAlchemy's compiled cache (without
    it, every list and record read of an entity with such a formula was compiled anew)."""

    inherit_cache = False
    _traverse_internals = [*ColumnClause._traverse_internals, ("variants", InternalTraversal.dp_string_clauseelement_dict)]

    def __init__(self, variants: dict[str, ColumnElement], type_=None):
        super().__init__("dialected", type_=type_)
        self.variants = variants


@compiles(Dialected)
def _compile_dialected(element: Dialected, compiler, **kw):
    chosen = element.variants.get(compiler.dialect.name, element.variants["default"])
    return compiler.process(chosen, **kw)


def not_sql(reason_en: str, reason_zh: str, b: Bound) -> NotSqlCompilable:
    return NotSqlCompilable(text(reason_en, reason_zh), b.pos)


class SqlCompiler:
    def __init__(self, table: FromClause | None, tables: Mapping[str, Table] | None, now: dt.datetime, tz: ZoneInfo):
        self.table = table
        self.tables = tables
        self.now = now
        self.tz = tz

    def top(self, b: Bound) -> ColumnElement:
        e = self.sql(b)
        sql_type = RESULT_SQL_TYPES.get(b.type.kind)
        return e if sql_type is None else type_coerce(e, sql_type)

    def sql(self, b: Bound) -> ColumnElement:
        if b.kind == "lit":
            return self.literal(b.value, b)
        if b.kind == "field":
            return self.field(b)
        if b.kind == "op":
            return self.op(b)
        return self.call(b)

    def literal(self, v: Any, b: Bound) -> ColumnElement:
        if v is None:
            return null()
        if isinstance(v, bool):
            return true() if v else false()
        if isinstance(v, Decimal):
            if b.type.integral or v == v.to_integral_value():
                return literal(int(v), Integer())
            return cast(literal(v, Numeric(38, 10)), Numeric(38, 10))
        if isinstance(v, dt.datetime):
            return literal(v, UTCDateTime())
        if isinstance(v, dt.date):
            return literal(v, Date())
        return cast(literal(v, String()), String())

    def field(self, b: Bound) -> ColumnElement:
        if self.table is None:  # probing compilability only
            return column(b.path[-1])
        if len(b.path) == 1:
            return self.table.c[b.path[0]]
        target = (self.tables or {}).get(b.entities[1].key)
        if target is None:
            raise not_sql("A lookup through a link needs the linked table.", "跨关联取值需要关联表。", b)
        link = self.table.c[b.path[0]]
        linked = target.alias(f"lk_{b.path[0]}")
        return select(linked.c[b.path[1]]).where(linked.c.id == link).scalar_subquery()

    def op(self, b: Bound) -> ColumnElement:
        name = b.name
        args = [self.sql(a) for a in b.args]
        if name == "AND":
            return and_(*args)
        if name == "OR":
            return or_(*args)
        if name == "NOT":
            return not_(args[0])
        if name == "NEG":
            return -args[0]
        x, y = args
        if name == "+":
            return x + y
        if name == "-":
            return x - y
        if name == "*":
            return x * y
        if name == "/":
            return Dialected({"sqlite": cast(x, Float()) / func.nullif(y, 0),
                              "default": cast(x, Numeric) / func.nullif(cast(y, Numeric), 0)}, type_=Numeric())
        if name == "%":
            if not (b.args[0].type.integral and b.args[1].type.integral):
                raise not_sql("'%' of non-whole numbers is not computed the same by every database.", "非整数的“%”运算在各数据库中结果不一致。", b)
            return x.op("%")(func.nullif(y, 0))
        ops = {"=": "__eq__", "!=": "__ne__", "<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__"}
        return getattr(x, ops[name])(y)

    def call(self, b: Bound) -> ColumnElement:
        name = b.name
        if name in ("TODAY", "NOW"):
            value = Evaluator({}, self.now, self.tz).call(b)
            return self.literal(value, b)
        if name == "DATE":
            if all(a.kind == "lit" for a in b.args):
                return self.literal(Evaluator({}, self.now, self.tz).call(b), b)
            raise not_sql("DATE() of values that are not constants cannot be computed by the database.", "DATE() 的参数不是常量时无法在数据库中计算。", b)
        if name == "ADD_MONTHS":
            raise not_sql("ADD_MONTHS is computed only in Python (databases differ at month ends).", "ADD_MONTHS 只能在 Python 中计算（各数据库对月末的处理不同）。", b)
        if name in ("YEAR", "MONTH", "DAY", "DAYS_BETWEEN", "ADD_DAYS") and any(a.type.kind == "datetime" for a in b.args):
            raise not_sql("Date parts of a date-time depend on the time zone and are computed only in Python.",
                          "日期时间的年月日与时区有关，只能在 Python 中计算。", b)
        if name == "CONCAT":
            parts = []
            for a in b.args:
                if a.type.kind not in ("text", "null"):
                    raise not_sql("CONCAT of a non-text value is computed only in Python (databases format numbers differently).",
                                  "CONCAT 连接非文本值时只能在 Python 中计算（各数据库的数字格式不同）。", b)
                parts.append(func.coalesce(self.sql(a), ""))
            out: ColumnElement[Any] = parts[0]
            for p in parts[1:]:
                out = out.op("||")(p)
            return type_coerce(out, String())
        if name == "ROUND" and len(b.args) == 2:
            places = b.args[1]
            if places.kind != "lit" or places.value is None or places.value < 0 or places.value != places.value.to_integral_value():
                raise not_sql("ROUND in the database needs a whole, non-negative number of places written as a constant.",
                              "在数据库中计算 ROUND 时，小数位数必须是非负整数常量。", b)
        if name in ("IF", "CASE"):
            return self.conditional(b)
        args = [self.sql(a) for a in b.args]
        if name == "AND":
            return and_(*args)
        if name == "OR":
            return or_(*args)
        if name == "NOT":
            return not_(args[0])
        if name == "ISBLANK":
            x = args[0]
            if b.args[0].type.kind == "text":
                return or_(x.is_(None), func.trim(x) == "")
            return x.is_(None)
        if name == "ROUND":
            places_n = int(b.args[1].value) if len(b.args) == 2 else 0
            return Dialected({"sqlite": func.round(args[0], places_n), "default": func.round(cast(args[0], Numeric), places_n)}, type_=Numeric())
        if name == "ABS":
            return func.abs(args[0])
        if name in ("MIN", "MAX"):
            if len(args) == 1:
                return args[0]
            pg = case((or_(*[a.is_(None) for a in args]), null()), else_=(func.least if name == "MIN" else func.greatest)(*args))
            return Dialected({"sqlite": (func.min if name == "MIN" else func.max)(*args), "default": pg})
        if name == "LEN":
            return func.length(args[0])
        if name == "UPPER":
            return func.upper(args[0])
        if name == "LOWER":
            return func.lower(args[0])
        if name == "TRIM":
            return func.trim(args[0])
        if name == "LEFT":
            s, n = args
            return func.substr(s, 1, case((n < 0, 0), else_=n))
        if name == "RIGHT":
            s, n = args
            sqlite = case((n <= 0, ""), (n >= func.length(s), s), else_=func.substr(s, -n))
            pg = case((n <= 0, ""), else_=func.right(s, cast(n, Integer)))
            return case((n.is_(None), null()), else_=Dialected({"sqlite": sqlite, "default": pg}, type_=String()))
        if name == "CONTAINS":
            s, part = args
            return Dialected({"sqlite": func.instr(s, part) > 0, "default": func.strpos(s, part) > 0}, type_=Boolean())
        if name in ("YEAR", "MONTH", "DAY"):
            fmt = {"YEAR": "%Y", "MONTH": "%m", "DAY": "%d"}[name]
            return Dialected({"sqlite": cast(func.strftime(fmt, args[0]), Integer),
                              "default": cast(func.extract(name.lower(), args[0]), Integer)}, type_=Integer())
        if name == "DAYS_BETWEEN":
            start, end = args
            return Dialected({"sqlite": cast(func.julianday(end) - func.julianday(start), Integer),
                              "default": end - start}, type_=Integer())
        if name == "ADD_DAYS":
            d, n = args
            return Dialected({"sqlite": func.date(d, func.printf("%+d days", n)),
                              "default": d + cast(func.trunc(n), Integer)}, type_=Date())
        raise not_sql("This function is computed only in Python.", "此函数只能在 Python 中计算。", b)

    def conditional(self, b: Bound) -> ColumnElement:
        args = b.args
        if b.name == "IF":
            whens = [(self.sql(args[0]), self.sql(args[1]))]
            otherwise = self.sql(args[2]) if len(args) > 2 else null()
        else:
            whens = [(self.sql(args[i]), self.sql(args[i + 1])) for i in range(0, len(args) - 1, 2)]
            otherwise = self.sql(args[-1]) if len(args) % 2 else null()
        sql_type = RESULT_SQL_TYPES.get(b.type.kind)
        return case(*whens, else_=otherwise) if sql_type is None else type_coerce(case(*whens, else_=otherwise), sql_type)



def rounded(expr: ColumnElement, places: int) -> ColumnElement:
    """ROUND(expr, places) as both databases compute it (half away from zero)."""
    return Dialected({"sqlite": func.round(expr, places), "default": func.round(cast(expr, Numeric), places)}, type_=Numeric())
