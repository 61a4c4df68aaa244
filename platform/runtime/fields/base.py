"""The field type contract. Adding a type is one subclass registered in ``registry``.

A type knows, for a field definition of its kind:
- its SQL column (``sql_type``) or that it has none (``stored = False``, child tables);
- its marshmallow field and validators (``marshmallow_field``);
- its JSON Schema fragment for the API (``json_schema``);
- its form widget (``widget``) and list rendering (``display``);
- its filter operators (``operators``) and how a filter compiles (``filter_clause``);
- how it parses from CSV/Excel text (``parse_text``);
- which definition properties it accepts (``config_schema``).
"""
from __future__ import annotations

import datetime as dt
import decimal
from typing import Any, ClassVar

from marshmallow import fields as mf
from sqlalchemy import and_, false, not_, or_
from sqlalchemy.sql import ColumnElement
from sqlalchemy.types import TypeEngine

from ..errors import BadQuery
from ..i18n_text import Text, join, text
from ..meta.model import FieldDef, Label
from ..permissions.masking import MaskedText

# Operators and the number of values they take: 0 (none), 1, 2 (between) or "n" (in).
OPERATOR_ARITY: dict[str, int | str] = {
    "eq": 1, "ne": 1, "lt": 1, "lte": 1, "gt": 1, "gte": 1, "between": 2,
    "in": "n", "not_in": "n", "contains": 1, "not_contains": 1, "starts_with": 1,
    "is_empty": 0, "is_not_empty": 0, "in_range": 1, "contains_any": "n", "contains_all": "n",
}

OPERATOR_LABELS: dict[str, Label] = {
    "eq": Label("等于", "equals"), "ne": Label("不等于", "not equal"),
    "lt": Label("小于", "less than"), "lte": Label("小于等于", "at most"),
    "gt": Label("大于", "greater than"), "gte": Label("大于等于", "at least"),
    "between": Label("介于", "between"), "in": Label("属于", "is any of"),
    "not_in": Label("不属于", "is none of"), "contains": Label("包含", "contains"),
    "not_contains": Label("不包含", "does not contain"), "starts_with": Label("开头是", "starts with"),
    "is_empty": Label("为空", "is empty"), "is_not_empty": Label("不为空", "is not empty"),
    "in_range": Label("时间范围", "in period"), "contains_any": Label("含任一", "has any of"),
    "contains_all": Label("含全部", "has all of"),
}

COMMON_CONFIG: dict[str, dict] = {}


class FieldType:
    name: ClassVar[str]
    label: ClassVar[Label]
    widget: ClassVar[str] = "text"
    stored: ClassVar[bool] = True
    computed: ClassVar[bool] = False  # no column, but QueryService computes a value (formula, lookup)
    sortable: ClassVar[bool] = True
    operators: ClassVar[tuple[str, ...]] = ("eq", "ne", "in", "not_in", "is_empty", "is_not_empty")
    # JSON Schema "properties" for type-specific definition keys, and which are required.
    config_properties: ClassVar[dict[str, dict]] = {}
    config_required: ClassVar[tuple[str, ...]] = ()

    # --- storage -----------------------------------------------------------------
    def sql_type(self, f: FieldDef) -> TypeEngine:
        raise NotImplementedError

    def foreign_key(self, f: FieldDef) -> str | None:
        """``table.column`` this field references, if any."""
        return None

    # --- input -------------------------------------------------------------------
    def marshmallow_field(self, f: FieldDef) -> mf.Field:
        """The marshmallow field validating API/form input into the Python value."""
        raise NotImplementedError

    def field_for(self, f: FieldDef) -> mf.Field:
        """``marshmallow_field(f)``, built once per field definition: definitions are immutable and a standalone
        marshmallow field keeps no state between calls, while building one (validators, messages) costs more than
        using it. Imports deserialize several values per row, so this is per-row work saved."""
        cache = self.__dict__.setdefault("_field_cache", {})
        hit = cache.get(id(f))
        if hit is None or hit[0] is not f:
            if len(cache) > 4096:  # old catalogs' definitions: drop them rather than grow without bound
                cache.clear()
            hit = cache[id(f)] = (f, self.marshmallow_field(f))
        return hit[1]

    def parse_text(self, f: FieldDef, text: str) -> Any:
        """Parse a CSV/Excel cell; raise ``ValueError`` with a user-facing message."""
        text = (text or "").strip()
        if text == "":
            return None
        return self._deserialize(f, text)

    def _deserialize(self, f: FieldDef, raw: Any) -> Any:
        from marshmallow import ValidationError

        try:
            return self.field_for(f).deserialize(raw)
        except ValidationError as exc:
            raise ValueError(join(flatten_messages(exc.messages))) from None

    # --- output ------------------------------------------------------------------
    def to_json(self, f: FieldDef, value: Any) -> Any:
        if isinstance(value, decimal.Decimal):
            return str(value)
        if isinstance(value, (dt.date, dt.datetime)):
            return value.isoformat()
        return value

    def from_db(self, f: FieldDef, value: Any) -> Any:
        return value

    def display(self, f: FieldDef, value: Any, locale: str) -> str:
        """Plain text for lists, exports and audit; templates escape it."""
        if value is None:
            return ""
        return str(self.to_json(f, value))

    # A value read through the query service may have been masked (``permissions.masking``): it is text then, not a
    # value of this type, so the places that format read values call these two rather than ``display`` / ``to_json``.
    def display_text(self, f: FieldDef, value: Any, locale: str) -> str:
        return str(value) if isinstance(value, MaskedText) else self.display(f, value, locale)

    def json_value(self, f: FieldDef, value: Any) -> Any:
        return str(value) if isinstance(value, MaskedText) else self.to_json(f, value)

    def json_schema(self, f: FieldDef) -> dict:
        raise NotImplementedError

    # --- querying ----------------------------------------------------------------
    def coerce_filter_value(self, f: FieldDef, value: Any) -> Any:
        try:
            return self._deserialize(f, value)
        except ValueError as exc:
            raise BadQuery(text("Filter value {value!r} is not valid for field '{field}': {problem}",
                                "“{field}”的筛选值 {value!r} 无效：{problem}", value=value, field=field_name(f), problem=exc.args[0])) from None

    def filter_clause(self, f: FieldDef, col: ColumnElement, op: str, value: Any, ctx: "FilterContext") -> ColumnElement:
        if op not in self.operators:
            raise unavailable_operator(self, f, op)
        if op == "is_empty":
            return col.is_(None)
        if op == "is_not_empty":
            return col.is_not(None)
        if op in ("in", "not_in"):
            values = [self.coerce_filter_value(f, v) for v in _as_list(value, f)]
            if not values:
                return false() if op == "in" else not_(false())
            clause = col.in_(values)
            return clause if op == "in" else or_(not_(clause), col.is_(None))
        if op == "between":
            lo, hi = _pair(value, f)
            parts = []
            if lo not in (None, ""):
                parts.append(col >= self.coerce_filter_value(f, lo))
            if hi not in (None, ""):
                parts.append(col <= self.coerce_filter_value(f, hi))
            if not parts:
                raise BadQuery(text("'between' on '{field}' needs at least one bound.", "“{field}”的“介于”条件至少要填写一个边界值。",
                                    field=field_name(f)))
            return and_(*parts)
        v = self.coerce_filter_value(f, value)
        if op == "eq":
            return col.is_(None) if v is None else col == v
        if op == "ne":
            return col.is_not(None) if v is None else or_(col != v, col.is_(None))
        if op == "lt":
            return col < v
        if op == "lte":
            return col <= v
        if op == "gt":
            return col > v
        if op == "gte":
            return col >= v
        raise BadQuery(text("Operator '{op}' is not implemented for field '{field}'.", "“{field}”不支持“{op}”条件。",
                            op=op_name(op), field=field_name(f)))

    # --- definition checks ---------------------------------------------------------
    def check_definition(self, f: FieldDef, entity_key: str, catalog_entities: dict) -> list[str]:
        """Cross-definition problems (e.g. a link to an unknown entity); empty when fine."""
        return []


class FilterContext:
    """What a filter needs beyond the column: the dialect, the timezone and 'now'."""

    def __init__(self, dialect: str, timezone: str, now: dt.datetime):
        self.dialect = dialect
        self.timezone = timezone
        self.now = now


def field_name(f: FieldDef) -> Text:
    """How messages name a field: its name in English (what API callers send), its label in Chinese."""
    return Text(f.name, f.label.zh or f.name)


def op_name(op: str) -> Text:
    """An operator in messages: its key in English, its label in Chinese."""
    label = OPERATOR_LABELS.get(op)
    return Text(op, label.zh if label else op)


def unavailable_operator(ft: "FieldType", f: FieldDef, op: str) -> BadQuery:
    allowed = ", ".join(ft.operators)
    allowed_zh = "、".join(OPERATOR_LABELS[o].zh if o in OPERATOR_LABELS else o for o in ft.operators)
    return BadQuery(text("Operator '{op}' is not available for field '{field}' ({type}); use one of: {allowed}.",
                         "“{field}”（{type}）不能使用“{op}”条件，可用的条件：{allowed}。",
                         op=op_name(op), field=field_name(f), type=Text(ft.name, ft.label.zh), allowed=Text(allowed, allowed_zh)))


def _as_list(value: Any, f: FieldDef) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        return [v for v in (p.strip() for p in value.split(",")) if v]
    raise BadQuery(text("Filter on '{field}' expects a list of values.", "“{field}”的筛选值应为多个值，请用逗号分隔。", field=field_name(f)))


def _pair(value: Any, f: FieldDef) -> tuple[Any, Any]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return value[0], value[1]
    raise BadQuery(text("'between' on '{field}' expects [low, high].", "“{field}”的“介于”条件需要两个值：下限和上限。", field=field_name(f)))



def flatten_messages(messages: Any) -> list[str]:
    """marshmallow messages as plain sentences; list items are named by position ("item 2: ...").
    ``Text`` messages stay ``Text``, so both languages survive."""
    if isinstance(messages, dict):
        out: list[str] = []
        for key, sub in messages.items():
            for m in flatten_messages(sub):
                if isinstance(key, int):
                    out.append(text("item {n}: {message}", "第 {n} 项：{message}", n=key + 1, message=m))
                else:
                    out.append(text("{where}: {message}", "{where}：{message}", where=str(key), message=m))
        return out
    if isinstance(messages, (list, tuple)):
        return [m for sub in messages for m in flatten_messages(sub)]
    return [messages if isinstance(messages, Text) else str(messages)]


def contains_nul(value: Any) -> bool:
    """Whether U+0000 hides anywhere in a JSON-like value. PostgreSQL cannot store it in text or JSON,
    so input and filters refuse it on every database alike."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, (list, tuple)):
        return any(contains_nul(v) for v in value)
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    return False


def escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
