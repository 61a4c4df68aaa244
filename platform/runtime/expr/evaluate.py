"""Evaluation in Python over a record dict.

NULL rules (the same as the SQL the expression compiles to):
- arithmetic, comparisons and text functions with a NULL argument give NULL; so do MIN and MAX;
- division or remainder by zero gives NULL;
- AND/OR use three-valued logic (FALSE AND NULL is FALSE, TRUE OR NULL is TRUE, NOT NULL is NULL);
- IF and CASE treat a NULL condition as not true;
- ``&`` and CONCAT treat NULL as empty text; ISBLANK is true for NULL and for text of only spaces.
Numbers are ``Decimal`` throughout (money never touches a float).
"""
from __future__ import annotations

import calendar
import datetime as dt
import decimal
from decimal import Decimal
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from ..i18n_text import text
from .check import Bound
from .errors import ExpressionError
from .limits import MAX_MAGNITUDE, MAX_STEPS, MAX_STRING_LENGTH

CONTEXT = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_UP, traps=[decimal.InvalidOperation, decimal.Overflow])
MAX_DAYS = 3_660_000  # about ten thousand years either way


class Evaluator:
    def __init__(self, record: Mapping[str, Any], now: dt.datetime, tz: ZoneInfo):
        self.record = record
        self.now = now
        self.tz = tz
        self.steps = 0

    def eval(self, b: Bound) -> Any:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise ExpressionError(text("The expression took too many steps to evaluate.", "表达式计算步骤过多。"), b.pos)
        if b.kind == "lit":
            return b.value
        if b.kind == "field":
            return self.field(b)
        if b.kind == "op":
            return self.op(b)
        return self.call(b)

    # --- fields -----------------------------------------------------------------------
    def field(self, b: Bound) -> Any:
        if len(b.path) == 1:
            value = self.record.get(b.path[0])
        else:
            key = ".".join(b.path)
            if key in self.record:
                value = self.record[key]
            else:
                linked = self.record.get(b.path[0])
                value = linked.get(b.path[1]) if isinstance(linked, Mapping) else None
        return normalize(value, b.type.kind)

    # --- operators --------------------------------------------------------------------
    def op(self, b: Bound) -> Any:
        name = b.name
        if name in ("AND", "OR"):
            return logic(name, [self.eval(a) for a in b.args])
        if name == "NOT":
            v = self.eval(b.args[0])
            return None if v is None else not v
        if name == "NEG":
            v = self.eval(b.args[0])
            return None if v is None else -v
        x, y = self.eval(b.args[0]), self.eval(b.args[1])
        if x is None or y is None:
            return None
        if name in ("+", "-", "*", "/", "%"):
            return self.arith(name, x, y, b.pos)
        return compare(name, x, y)

    def arith(self, op: str, x: Decimal, y: Decimal, pos: int) -> Decimal | None:
        try:
            if op == "+":
                r = CONTEXT.add(x, y)
            elif op == "-":
                r = CONTEXT.subtract(x, y)
            elif op == "*":
                r = CONTEXT.multiply(x, y)
            elif y == 0:
                return None
            elif op == "/":
                r = CONTEXT.divide(x, y)
            else:
                r = CONTEXT.remainder(x, y)
        except (decimal.InvalidOperation, decimal.Overflow):
            raise self.too_large(pos) from None
        return self.bounded(r, pos)

    def bounded(self, r: Decimal, pos: int) -> Decimal:
        if abs(r) >= MAX_MAGNITUDE:
            raise self.too_large(pos)
        return r

    @staticmethod
    def too_large(pos: int) -> ExpressionError:
        return ExpressionError(text("A number grew too large while evaluating the expression.", "表达式计算中数值过大。"), pos)

    # --- functions --------------------------------------------------------------------
    def call(self, b: Bound) -> Any:
        name = b.name
        if name == "IF":
            if self.eval(b.args[0]) is True:
                return self.eval(b.args[1])
            return self.eval(b.args[2]) if len(b.args) > 2 else None
        if name == "CASE":
            args = b.args
            for i in range(0, len(args) - 1, 2):
                if self.eval(args[i]) is True:
                    return self.eval(args[i + 1])
            return self.eval(args[-1]) if len(args) % 2 else None
        values = [self.eval(a) for a in b.args]
        if name in ("AND", "OR"):
            return logic(name, values)
        if name == "NOT":
            return None if values[0] is None else not values[0]
        if name == "ISBLANK":
            v = values[0]
            return v is None or (isinstance(v, str) and v.strip(" ") == "")
        if name == "CONCAT":
            return self.string("".join(as_text(v) for v in values), b.pos)
        if name == "TODAY":
            return self.now.astimezone(self.tz).date()
        if name == "NOW":
            return self.now
        if any(v is None for v in values):
            return None
        return getattr(self, "fn_" + name.lower())(b, *values)

    def string(self, s: str, pos: int) -> str:
        if len(s) > MAX_STRING_LENGTH:
            raise ExpressionError(text("The expression produced text longer than {max} characters.", "表达式产生的文本超过 {max} 个字符。",
                                       max=MAX_STRING_LENGTH), pos)
        return s

    def fn_round(self, b, x, places=Decimal(0)):
        p = int(places)
        if not -12 <= p <= 12:
            raise ExpressionError(text("ROUND can keep between -12 and 12 places.", "ROUND 的小数位数应在 -12 到 12 之间。"), b.pos)
        return self.bounded(x.quantize(Decimal(1).scaleb(-p), rounding=decimal.ROUND_HALF_UP, context=CONTEXT), b.pos)

    def fn_abs(self, b, x):
        return abs(x)

    def fn_min(self, b, *xs):
        return min(xs)

    def fn_max(self, b, *xs):
        return max(xs)

    def fn_len(self, b, s):
        return Decimal(len(s))

    def fn_upper(self, b, s):
        return self.string(s.upper(), b.pos)

    def fn_lower(self, b, s):
        return self.string(s.lower(), b.pos)

    def fn_trim(self, b, s):
        return s.strip(" ")

    def fn_left(self, b, s, n):
        n = int(n)
        return s[:n] if n > 0 else ""

    def fn_right(self, b, s, n):
        n = int(n)
        return s[-n:] if n > 0 else ""

    def fn_contains(self, b, s, part):
        return part in s

    def fn_date(self, b, y, m, d):
        try:
            return dt.date(int(y), int(m), int(d))
        except (ValueError, OverflowError):
            return None

    def local_date(self, v) -> dt.date:
        return v.astimezone(self.tz).date() if isinstance(v, dt.datetime) else v

    def fn_year(self, b, v):
        return Decimal(self.local_date(v).year)

    def fn_month(self, b, v):
        return Decimal(self.local_date(v).month)

    def fn_day(self, b, v):
        return Decimal(self.local_date(v).day)

    def fn_days_between(self, b, start, end):
        return Decimal((self.local_date(end) - self.local_date(start)).days)

    def fn_add_days(self, b, v, n):
        n = int(n)
        if abs(n) > MAX_DAYS:
            return None
        try:
            return v + dt.timedelta(days=n)
        except OverflowError:
            return None

    def fn_add_months(self, b, v, n):
        n = int(n)
        if abs(n) > MAX_DAYS // 28:
            return None
        total = v.year * 12 + (v.month - 1) + n
        year, month = divmod(total, 12)
        if not 1 <= year <= 9999:
            return None
        day = min(v.day, calendar.monthrange(year, month + 1)[1])
        return v.replace(year=year, month=month + 1, day=day)


def logic(name: str, values: list) -> bool | None:
    if name == "AND":
        if any(v is False for v in values):
            return False
        return None if any(v is None for v in values) else True
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def compare(op: str, x: Any, y: Any) -> bool:
    if op == "=":
        return x == y
    if op == "!=":
        return x != y
    if op == "<":
        return x < y
    if op == "<=":
        return x <= y
    if op == ">":
        return x > y
    return x >= y


def as_text(v: Any) -> str:
    """How CONCAT and ``&`` show a non-text value."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, Decimal):
        return format(v.normalize(), "f") if v != v.to_integral_value() else format(v.to_integral_value(), "f")
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    return str(v)


def normalize(value: Any, kind: str) -> Any:
    """A record's value as the expression sees it: numbers as Decimal, aware datetimes, dates as dates."""
    if value is None:
        return None
    if kind == "number":
        if isinstance(value, bool):
            return Decimal(int(value))
        if isinstance(value, Decimal):
            return value
        if isinstance(value, (int, str)):
            try:
                return Decimal(value)
            except decimal.InvalidOperation:
                return None
        if isinstance(value, float):
            return Decimal(repr(value))
        if isinstance(value, Mapping) and "id" in value:  # a link given as {"id": ..., "label": ...}
            return Decimal(value["id"])
        return None
    if kind == "text":
        return value if isinstance(value, str) else str(value)
    if kind == "boolean":
        return bool(value)
    if kind == "date":
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, str):
            return dt.date.fromisoformat(value[:10])
        return value
    if kind == "datetime":
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value
    return value
