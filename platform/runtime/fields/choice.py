"""Choice types: single select, multi select (options with stable values) and free tags."""
from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields as mf
from sqlalchemy import JSON, Integer, String, and_, exists, false, func, not_, or_, select
from sqlalchemy.sql.functions import Function
from sqlalchemy.dialects.postgresql import JSONB

from ..errors import BadQuery
from ..i18n_text import text
from ..meta.model import FieldDef, Label
from .base import FieldType, _as_list, field_name, unavailable_operator
from .messages import LIST_MESSAGES, LocalizedString

OPTION_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["value", "label"],
        "additionalProperties": False,
        "properties": {
            "value": {"type": "string", "pattern": "^[A-Za-z0-9_\\-]{1,64}$"},
            "label": {"$ref": "#/$defs/label"},
            "color": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"},
        },
    },
}


def option_values(f: FieldDef) -> list[str]:
    return [o["value"] for o in f.opt("options", ())]


def option_label(f: FieldDef, value: str, locale: str) -> str:
    for o in f.opt("options", ()):
        if o["value"] == value:
            lab = o["label"]
            return Label.of(lab, value).get(locale)
    return value


def option_color(f: FieldDef, value: str) -> str | None:
    for o in f.opt("options", ()):
        if o["value"] == value:
            return o.get("color")
    return None


class OptionString(LocalizedString):
    """Accepts an option's value, or (from spreadsheets) its zh/en label."""

    def __init__(self, field_def: FieldDef, **kw):
        super().__init__(**kw)
        self.field_def = field_def
        self._index: OptionIndex | None = None  # built on first use: the field is built once per field definition

    def _deserialize(self, value, attr, data, **kwargs):
        s = super()._deserialize(value, attr, data, **kwargs).strip()
        if s == "":
            return None
        if self._index is None:
            self._index = OptionIndex(self.field_def)
        return self._index.resolve(s)


def option_problems(f: FieldDef) -> list[str]:
    """Duplicate option values would make stored data ambiguous; duplicate labels would make imports ambiguous."""
    out: list[str] = []
    values: dict[Any, int] = {}
    labels: dict[str, int] = {}
    for i, o in enumerate(f.opt("options", ())):
        if o["value"] in values:
            out.append(f"option value '{o['value']}' is used twice (options {values[o['value']]} and {i}); every option needs its own value")
        values.setdefault(o["value"], i)
        lab = Label.of(o["label"], o["value"])
        for name in {lab.zh, lab.en.lower()}:
            if name in labels and labels[name] != i:
                out.append(f"option label '{name}' is used by options {labels[name]} and {i}; labels must tell options apart")
            labels.setdefault(name, i)
    return out


def resolve_option(f: FieldDef, s: str) -> str:
    """The value of the first option whose value or Chinese label is ``s``, or whose English label is ``s`` in any case."""
    for o in f.opt("options", ()):
        lab = Label.of(o["label"], o["value"])
        if s == o["value"] or s == lab.zh or s.lower() == lab.en.lower():
            return o["value"]
    raise _not_an_option(f, s)


class OptionIndex:
    """``resolve_option`` by dictionary look-ups (an import resolves every cell of a choice column): the same answer,
    the first matching option in order, without building each option's label for each cell."""

    def __init__(self, f: FieldDef):
        self.field_def = f
        self.exact: dict[str, tuple[float, str]] = {}  # (option's position, its value)
        self.english: dict[str, tuple[float, str]] = {}
        for i, o in enumerate(f.opt("options", ())):
            lab = Label.of(o["label"], o["value"])
            self.exact.setdefault(o["value"], (i, o["value"]))
            self.exact.setdefault(lab.zh, (i, o["value"]))
            self.english.setdefault(lab.en.lower(), (i, o["value"]))

    def resolve(self, s: str) -> str:
        found = min(self.exact.get(s, _NONE), self.english.get(s.lower(), _NONE))
        if found is _NONE:
            raise _not_an_option(self.field_def, s)
        return found[1]


_NONE: tuple[float, str] = (float("inf"), "")


def _not_an_option(f: FieldDef, s: str) -> ValidationError:
    allowed = ", ".join(option_values(f))
    allowed_zh = "、".join(Label.of(o["label"], o["value"]).zh for o in f.opt("options", ()))
    return ValidationError(text("'{value}' is not one of the options ({allowed}).", "“{value}”不是可选项，请从以下选项中选择：{allowed}。",
                                value=s, allowed=Label(allowed_zh, allowed)))


class SingleSelectType(FieldType):
    name = "single_select"
    label = Label("单选", "Single select")
    widget = "select"
    config_properties = {"options": OPTION_SCHEMA}
    config_required = ("options",)

    def sql_type(self, f):
        return String(64)

    def marshmallow_field(self, f):
        return OptionString(f, allow_none=True)

    def json_schema(self, f):
        return {"type": ["string", "null"], "enum": option_values(f) + [None]}

    def check_definition(self, f, entity_key, catalog_entities):
        return option_problems(f)

    def display(self, f, value, locale):
        return "" if value is None else option_label(f, value, locale)


def json_list_type():
    return JSON().with_variant(JSONB(), "postgresql")


class StringList(mf.List):
    """A list from JSON, or from text separated by commas/；/、."""

    default_error_messages = LIST_MESSAGES

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace("，", ",").replace("；", ",").replace(";", ",").replace("、", ",").split(",")]
            value = [p for p in parts if p]
        if value is None:
            return None
        out = super()._deserialize(value, attr, data, **kwargs)
        seen: list = []
        for v in out:
            if v not in seen:
                seen.append(v)
        return seen


def list_contains_clause(col, values: list[str], dialect: str, mode: str):
    """``mode`` is 'any' or 'all'. Values are bound; column names come from metadata."""
    if dialect == "postgresql":
        parts = [col.op("@>")(func.jsonb_build_array(v)) for v in values]
    else:
        parts = []
        for v in values:
            je = func.json_each(col).table_valued("value")
            parts.append(exists(select(1).select_from(je).where(je.c.value == v)))
    if not parts:
        return false()
    return or_(*parts) if mode == "any" else and_(*parts)


class _ListType(FieldType):
    sortable = False
    operators = ("contains_any", "contains_all", "is_empty", "is_not_empty")

    def sql_type(self, f):
        return json_list_type()

    def from_db(self, f, value):
        return list(value) if value else []

    def filter_clause(self, f, col, op, value, ctx):
        if op not in self.operators:
            raise unavailable_operator(self, f, op)
        if op == "is_empty":
            # A plain named function: sqlalchemy-utils (pulled in by FAB) registers an uncacheable "json_array_length".
            length = Function("json_array_length" if ctx.dialect == "sqlite" else "jsonb_array_length", col, type_=Integer())
            return or_(col.is_(None), length == 0)
        if op == "is_not_empty":
            return not_(self.filter_clause(f, col, "is_empty", value, ctx))
        values = [self.coerce_item(f, v) for v in _as_list(value, f)]
        return list_contains_clause(col, values, ctx.dialect, "any" if op == "contains_any" else "all")

    def coerce_item(self, f, v):
        return str(v)

    def display(self, f, value, locale):
        return "、".join(value or []) if (locale or "").startswith("zh") else ", ".join(value or [])


class MultiSelectType(_ListType):
    name = "multi_select"
    label = Label("多选", "Multi select")
    widget = "multiselect"
    config_properties = {"options": OPTION_SCHEMA, "max_items": {"type": "integer", "minimum": 1}}
    config_required = ("options",)

    def marshmallow_field(self, f):
        return StringList(OptionString(f), allow_none=True, validate=_max_items(f.opt("max_items")))

    def coerce_item(self, f, v):
        try:
            return resolve_option(f, str(v))
        except ValidationError as exc:
            raise BadQuery(text("Filter on '{field}': {problem}", "“{field}”的筛选条件有误：{problem}", field=field_name(f), problem=exc.messages[0])) from None

    def json_schema(self, f):
        return {"type": ["array", "null"], "items": {"type": "string", "enum": option_values(f)}, "uniqueItems": True}

    def check_definition(self, f, entity_key, catalog_entities):
        return option_problems(f)

    def display(self, f, value, locale):
        sep = "、" if (locale or "").startswith("zh") else ", "
        return sep.join(option_label(f, v, locale) for v in (value or []))


def _max_items(n: int | None):
    def check(values):
        if values is not None and n and len(values) > n:
            raise ValidationError(text("Choose at most {n}.", "最多选择 {n} 项。", n=n))

    return check


class TagsType(_ListType):
    name = "tags"
    label = Label("标签", "Tags")
    widget = "tags"
    config_properties = {
        "max_items": {"type": "integer", "minimum": 1, "maximum": 100},
        "suggestions": {"type": "array", "items": {"type": "string", "maxLength": 32}},
    }

    def marshmallow_field(self, f):
        def tag_ok(v):
            if len(v) > 32:
                raise ValidationError(text("A tag is at most 32 characters.", "每个标签最多 32 个字符。"))

        return StringList(LocalizedString(validate=tag_ok), allow_none=True, validate=_max_items(f.opt("max_items", 20)))

    def json_schema(self, f):
        return {"type": ["array", "null"], "items": {"type": "string", "maxLength": 32}, "maxItems": f.opt("max_items", 20)}
