"""Numeric types: integer, decimal, money (CNY), percent, boolean."""
from __future__ import annotations

import decimal
from typing import Any

from marshmallow import ValidationError, fields as mf
from sqlalchemy import BigInteger, Boolean, Numeric

from ..i18n_text import text
from ..meta.model import FieldDef, Label
from .base import FieldType
from .messages import BOOLEAN_MESSAGES, INTEGER_MESSAGES, NUMBER_MESSAGES, Range

NUMBER_OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "between", "in", "not_in", "is_empty", "is_not_empty")
RANGE_CONFIG = {"min": {"type": "number"}, "max": {"type": "number"}}


def range_problems(f: FieldDef) -> list[str]:
    lo, hi = f.opt("min"), f.opt("max")
    if lo is not None and hi is not None and lo > hi:
        return [f"min ({lo}) is greater than max ({hi}); no value could be valid"]
    return []


class OptionalRange(Range):
    """A range check that lets an empty value through (required-ness is checked elsewhere)."""

    def __call__(self, value):
        return value if value is None else super().__call__(value)


def _range(f: FieldDef):
    if f.opt("min") is None and f.opt("max") is None:
        return []
    return [OptionalRange(min=f.opt("min"), max=f.opt("max"))]


class StrictInteger(mf.Integer):
    """Integers only: '12' is accepted from forms, 12.5 and True are not."""

    default_error_messages = INTEGER_MESSAGES

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, str):
            value = value.strip().replace(",", "")
            if value == "":
                return None
        if isinstance(value, (float, decimal.Decimal)) and value == value and value not in (float("inf"), float("-inf")) and value % 1 != 0:
            # marshmallow's non-strict Integer would truncate 12.5 to 12 without a word.
            raise ValidationError(text("Not a valid integer; it has a fractional part.", "请输入整数，不能带小数。"))
        return super()._deserialize(value, attr, data, **kwargs)


class IntegerType(FieldType):
    name = "integer"
    label = Label("整数", "Integer")
    widget = "number"
    operators = NUMBER_OPERATORS
    config_properties = dict(RANGE_CONFIG)

    def sql_type(self, f):
        return BigInteger()

    def marshmallow_field(self, f):
        lo, hi = -(2**63), 2**63 - 1
        return StrictInteger(strict=False, allow_none=True, validate=_range(f) + [OptionalRange(min=lo, max=hi, error=text("Number is too large.", "数值过大。"))])

    def check_definition(self, f, entity_key, catalog_entities):
        return range_problems(f)

    def json_schema(self, f):
        s: dict[str, Any] = {"type": ["integer", "null"]}
        if f.opt("min") is not None:
            s["minimum"] = f.opt("min")
        if f.opt("max") is not None:
            s["maximum"] = f.opt("max")
        return s


# SQLite (the embedded default) keeps NUMERIC values as 8-byte floats, exact to 15
# significant digits. Every database is held to that, so a value never changes silently.
MAX_EXACT_DIGITS = 15


class ScaledDecimal(mf.Decimal):
    """A decimal that refuses more digits than the column holds instead of silently rounding."""

    default_error_messages = NUMBER_MESSAGES

    def __init__(self, precision: int, scale: int, **kw):
        super().__init__(allow_nan=False, **kw)
        self.precision, self.scale = precision, scale
        self.integer_digits = max(1, min(precision, MAX_EXACT_DIGITS) - scale)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, str):
            value = value.strip().replace(",", "").replace("¥", "").replace("￥", "")
            if value.endswith("%"):
                value = value[:-1]
            if value == "":
                return None
        if isinstance(value, float):
            value = repr(value)
        d = super()._deserialize(value, attr, data, **kwargs)
        exp = d.as_tuple().exponent
        if isinstance(exp, int) and -exp > self.scale:
            raise ValidationError(text("Use at most {n} decimal places.", "最多保留 {n} 位小数。", n=self.scale))
        if abs(d) >= decimal.Decimal(10) ** self.integer_digits:
            raise ValidationError(text("Number is too large (at most {n} digits before the decimal point).", "数值过大：整数部分最多 {n} 位。",
                                       n=self.integer_digits))
        return d


class DecimalType(FieldType):
    name = "decimal"
    label = Label("小数", "Decimal")
    widget = "number"
    operators = NUMBER_OPERATORS
    default_precision, default_scale = 18, 4
    config_properties = {**RANGE_CONFIG, "precision": {"type": "integer", "minimum": 1, "maximum": 38}, "scale": {"type": "integer", "minimum": 0, "maximum": 12}}

    def precision_scale(self, f) -> tuple[int, int]:
        return int(f.opt("precision", self.default_precision)), int(f.opt("scale", self.default_scale))

    def sql_type(self, f):
        p, s = self.precision_scale(f)
        return Numeric(p, s, asdecimal=True)

    def marshmallow_field(self, f):
        p, s = self.precision_scale(f)
        return ScaledDecimal(p, s, allow_none=True, validate=_range(f))

    def check_definition(self, f, entity_key, catalog_entities):
        p, s = self.precision_scale(f)
        out = range_problems(f)
        if s > p:
            out.append(f"scale ({s}) is greater than precision ({p}); precision counts all digits, scale those after the decimal point")
        return out

    def from_db(self, f, value):
        if value is None or isinstance(value, decimal.Decimal):
            return value
        return decimal.Decimal(str(value))

    def json_schema(self, f):
        p, s = self.precision_scale(f)
        return {"type": ["string", "null"], "format": "decimal", "pattern": r"^-?\d+(\.\d{1,%d})?$" % max(s, 1), "description": f"Decimal with up to {s} places"}

    def display(self, f, value, locale):
        if value is None:
            return ""
        _, s = self.precision_scale(f)
        return f"{decimal.Decimal(value):,.{s}f}"


class MoneyType(DecimalType):
    name = "money"
    label = Label("金额", "Money")
    default_precision, default_scale = 18, 2
    config_properties = {**RANGE_CONFIG, "currency": {"enum": ["CNY"]}}

    def precision_scale(self, f):
        return 18, 2

    def display(self, f, value, locale):
        return "" if value is None else f"¥{decimal.Decimal(value):,.2f}"


class PercentType(DecimalType):
    name = "percent"
    label = Label("百分比", "Percent")
    default_precision, default_scale = 9, 4
    config_properties = {**RANGE_CONFIG, "scale": {"type": "integer", "minimum": 0, "maximum": 4}}

    def precision_scale(self, f):
        return 9, int(f.opt("scale", 2))

    def display(self, f, value, locale):
        if value is None:
            return ""
        _, s = self.precision_scale(f)
        return f"{decimal.Decimal(value):.{s}f}%"


TRUE_WORDS: set[object] = {"1", "true", "yes", "y", "on", "是", "对", "✓", "t"}
FALSE_WORDS: set[object] = {"0", "false", "no", "n", "off", "否", "错", "✗", "f"}


class LooseBoolean(mf.Boolean):
    default_error_messages = {**BOOLEAN_MESSAGES, "invalid": text("Not a valid yes/no value (use true/false, 是/否).", "请填写是或否（是/否、true/false）。")}
    truthy = TRUE_WORDS
    falsy = FALSE_WORDS

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            v = value.strip().lower()
            if v == "":
                return None
            if v in TRUE_WORDS:
                return True
            if v in FALSE_WORDS:
                return False
            raise self.make_error("invalid")
        if value in (0, 1) and not isinstance(value, float):
            return bool(value)
        if isinstance(value, bool):
            return value
        raise self.make_error("invalid")


class BooleanType(FieldType):
    name = "boolean"
    label = Label("是/否", "Yes/No")
    widget = "checkbox"
    operators = ("eq", "ne", "is_empty", "is_not_empty")

    def sql_type(self, f):
        return Boolean()

    def marshmallow_field(self, f):
        return LooseBoolean(allow_none=True)

    def json_schema(self, f):
        return {"type": ["boolean", "null"]}

    def display(self, f, value, locale):
        if value is None:
            return ""
        zh = (locale or "").startswith("zh")
        return ("是" if value else "否") if zh else ("Yes" if value else "No")
