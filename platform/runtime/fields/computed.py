"""Computed field kinds: formula, lookup and rollup. All three are read-only.

- ``formula``: an expression over the record (``expression``, ``result`` type). No column: QueryService
  computes it in the select when it compiles to SQL (so it filters and sorts), else in Python per row.
- ``lookup``: a field of the record a link points at (``link``, ``field``). It is a formula whose
  expression is ``link.field``; the catalog compiler fills in ``expression`` and ``result``.
- ``rollup``: count/sum/min/max/avg over the rows of a child table or the records linking here
  (``source``, ``link``, ``function``, ``field``, optional ``filter`` expression on the source). A stored
  column, kept right by the record service in the same transaction as the change to a source row.

Filters, display and JSON of a formula or lookup are those of its result type.
"""
from __future__ import annotations

import decimal
from typing import Any

from sqlalchemy import Numeric

from ..meta.model import FieldDef, Label
from .base import OPERATOR_ARITY, FieldType
from .numeric import BooleanType, DecimalType, IntegerType
from .temporal import DateTimeType, DateType
from .text import TextType

COMPUTED_TYPES = frozenset({"formula", "lookup", "rollup"})
RESULT_KINDS = ("number", "integer", "text", "boolean", "date", "datetime")
ROLLUP_FUNCTIONS = ("count", "sum", "min", "max", "avg")
NAME = {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"}
ENTITY_KEY = {"type": "string", "pattern": "^[a-z][a-z0-9_]*\\.[a-z][a-z0-9_]*$"}


class FormulaType(FieldType):
    name = "formula"
    label = Label("公式", "Formula")
    widget = "computed"
    stored = False
    computed = True
    operators = tuple(OPERATOR_ARITY)  # the result type's operators apply; see filter_clause
    config_properties = {"expression": {"type": "string", "minLength": 1, "maxLength": 4000},
                         "result": {"enum": list(RESULT_KINDS)}, "scale": {"type": "integer", "minimum": 0, "maximum": 12}}
    config_required = ("expression", "result")

    def __init__(self, timezone: str = "Asia/Shanghai"):
        self.results: dict[str, FieldType] = {
            "number": DecimalType(), "integer": IntegerType(), "text": TextType(), "boolean": BooleanType(),
            "date": DateType(), "datetime": DateTimeType(timezone),
        }

    def result_of(self, f: FieldDef) -> tuple[FieldType, FieldDef]:
        """The type that filters, shows and serialises this field's values, and a field def of it."""
        kind = f.opt("result") or "text"
        config = {"precision": 18, "scale": self.scale(f)} if kind == "number" else {}
        return self.results[kind], FieldDef(id=f.id, name=f.name, type=self.results[kind].name, label=f.label, read_only=True, config=config)

    def sql_type(self, f):
        return None

    def marshmallow_field(self, f):
        # The result type's field: input is parsed only to be refused as read-only; cursors decode with it.
        ft, rf = self.result_of(f)
        return ft.marshmallow_field(rf)

    def to_json(self, f, value):
        ft, rf = self.result_of(f)
        return ft.to_json(rf, value)

    def from_db(self, f, value):
        """Numbers come back at the declared scale (QueryService rounds the same way in SQL, so keyset
        cursors built from these values match the column); whole-number results as ``int``."""
        kind = f.opt("result")
        if value is None or kind not in ("number", "integer"):
            ft, rf = self.result_of(f)
            return ft.from_db(rf, value)
        if kind == "integer":
            return int(value)
        return decimal.Decimal(str(value)).quantize(decimal.Decimal(1).scaleb(-self.scale(f)), rounding=decimal.ROUND_HALF_UP)

    @staticmethod
    def scale(f: FieldDef) -> int:
        return int(f.opt("scale", 4))

    def display(self, f, value, locale):
        ft, rf = self.result_of(f)
        return ft.display(rf, value, locale)

    def json_schema(self, f):
        ft, rf = self.result_of(f)
        return {**ft.json_schema(rf), "readOnly": True}

    def coerce_filter_value(self, f, value):
        ft, rf = self.result_of(f)
        return ft.coerce_filter_value(rf, value)

    def filter_clause(self, f, col, op, value, ctx):
        ft, rf = self.result_of(f)
        return ft.filter_clause(rf, col, op, value, ctx)

    def parse_text(self, f, text):
        return None


class LookupType(FormulaType):
    name = "lookup"
    label = Label("引用", "Lookup")
    config_properties = {"link": NAME, "field": NAME,
                         # filled in by the catalog compiler from the link's target field
                         "expression": {"type": "string"}, "result": {"enum": list(RESULT_KINDS)}}
    config_required = ("link", "field")


class RollupType(DecimalType):
    name = "rollup"
    label = Label("汇总", "Rollup")
    widget = "computed"
    config_properties = {"source": ENTITY_KEY, "link": NAME, "function": {"enum": list(ROLLUP_FUNCTIONS)}, "field": NAME,
                         # an expression on the source ("status = 'paid'") or a filter tree like a view's
                         "filter": {"oneOf": [{"type": "string", "minLength": 1, "maxLength": 4000}, {"$ref": "common.json#/$defs/filter"}]},
                         "scale": {"type": "integer", "minimum": 0, "maximum": 4}}
    config_required = ("source", "function")

    def precision_scale(self, f):
        return (18, 0) if f.opt("function") == "count" else (18, int(f.opt("scale", 4)))

    def sql_type(self, f):
        p, s = self.precision_scale(f)
        return Numeric(p, s, asdecimal=True)

    def to_json(self, f, value: Any):
        if value is not None and f.opt("function") == "count":
            return int(value)
        return super().to_json(f, value)

    def json_schema(self, f):
        if f.opt("function") == "count":
            return {"type": ["integer", "null"], "readOnly": True}
        return {**super().json_schema(f), "readOnly": True}

    def check_definition(self, f, entity, entities):
        return []

    def parse_text(self, f, text):
        return None


def effective_operators(ft: FieldType, f: FieldDef) -> tuple[str, ...]:
    """The filter operators a field really offers: a formula's or lookup's are those of its result type."""
    if isinstance(ft, FormulaType):
        rt, _ = ft.result_of(f)
        return rt.operators
    return ft.operators
