"""The list page's filter builder: query-string rows (field, operator, value) → the query service's filter tree.

A condition row is three parallel query parameters, ``ff`` (field), ``fo`` (operator) and
``fv`` (value), repeated once per row; ``match`` is ``all`` or ``any``; ``saved`` names a
saved filter of the view, or a user's saved filter by ``sf-<id>``. Validation of fields, operators and values stays in the query
service: this module only shapes the tree.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import BadQuery
from ..i18n_text import text
from ..fields import effective_operators
from ..fields.base import OPERATOR_ARITY, OPERATOR_LABELS
from ..fields.temporal import PERIODS
from ..meta.catalog import Catalog
from ..meta.model import EntityDef, FieldDef, ViewDef
from ..query.filters import SYSTEM_FIELDS
from ..saved_filters import parse_key
from .i18n import translate

MAX_ROWS = 20
FILTER_SYSTEM_FIELDS = ("created_at", "updated_at")


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str


@dataclass(frozen=True)
class FieldChoice:
    name: str
    label: str
    operators: tuple[tuple[str, str], ...]  # (op, localized label)


def conditions_from_args(args) -> list[Condition]:
    """The rows the user filled in; a row without a field is ignored."""
    fields, ops, values = args.getlist("ff"), args.getlist("fo"), args.getlist("fv")
    if len(fields) > MAX_ROWS:
        raise BadQuery(text("A filter has at most {n} conditions.", "筛选条件最多 {n} 个。", n=MAX_ROWS))
    rows = []
    for i, name in enumerate(fields):
        name = (name or "").strip()
        if not name:
            continue
        op = ops[i].strip() if i < len(ops) else ""
        rows.append(Condition(name, op, values[i] if i < len(values) else ""))
    return rows


def _value(c: Condition) -> Any:
    arity = OPERATOR_ARITY.get(c.op)
    if arity is None:
        raise BadQuery(text("'{op}' is not a filter operator.", "“{op}”不是可用的筛选条件，请从列表中选择。", op=c.op))
    if arity == 0:
        return None
    raw = c.value.strip()
    if arity == "n":
        return [p.strip() for p in raw.replace("，", ",").split(",") if p.strip()]
    if arity == 2:
        parts = [p.strip() for p in raw.replace("，", ",").split(",")]
        if len(parts) != 2:
            raise BadQuery(text("'between' on '{field}' needs two values separated by a comma, e.g. 10,20.",
                                "“{field}”的“介于”条件需要两个值，用逗号分隔，如 10,20。", field=c.field))
        return parts
    if raw == "":
        raise BadQuery(text("The condition on '{field}' needs a value.", "“{field}”的条件需要填写值。", field=c.field))
    return raw


def chosen_filter(view: ViewDef, saved: str | None, actor, saved_filters) -> tuple[dict | None, str | None]:
    """(filter tree, sort) of the saved filter in ``?saved=``: a view's filter by name, or a user's by ``sf-<id>``.

    A user's filter is found only among those the actor may use (own or shared with a role they hold now);
    its tree then runs through the query service as the actor, under the actor's rows and fields."""
    if not saved:
        return None, None
    if parse_key(saved) is not None:
        mine = saved_filters.find(actor, view.entity, saved)
        return dict(mine.filter), mine.sort
    chosen = next((s for s in view.filters if s.name == saved), None)
    if chosen is None:
        raise BadQuery(text("There is no saved filter '{name}'; choose one from the list.", "没有名为“{name}”的已保存筛选，请从列表中选择。", name=saved))
    return dict(chosen.filter), None


def conditions_tree(conditions: list[Condition], match: str) -> dict | None:
    """The filter builder's rows as one ``and``/``or`` node, or None when no row is filled in."""
    built = [{"field": c.field, "op": c.op, "value": _value(c)} for c in conditions]
    return {("or" if match == "any" else "and"): built} if built else None


def filter_tree(saved_tree: dict | None, conditions: list[Condition], match: str) -> dict | None:
    """The filter tree for QueryService.list (a chosen saved filter AND the builder's rows), or None."""
    parts = [p for p in (saved_tree, conditions_tree(conditions, match)) if p]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"and": parts}


def field_choices(catalog: Catalog, entity: EntityDef, readable: tuple[str, ...], locale: str) -> list[FieldChoice]:
    """Fields the builder offers, each with the operators of its type."""
    out = []
    for f in entity.fields:
        ft = catalog.type_of(f)
        if not (ft.stored or ft.computed) or not ft.operators or f.name not in readable:
            continue
        ops = effective_operators(ft, f)
        out.append(FieldChoice(f.name, f.label.get(locale), tuple((op, OPERATOR_LABELS[op].get(locale)) for op in ops)))
    for name in FILTER_SYSTEM_FIELDS:
        f = SYSTEM_FIELDS[name]
        ops = catalog.type_of(f).operators
        out.append(FieldChoice(name, f.label.get(locale), tuple((op, OPERATOR_LABELS[op].get(locale)) for op in ops)))
    return out


def value_widget(catalog: Catalog, f: FieldDef | None, op: str, locale: str) -> dict:
    """How the value box of a condition looks: a select of options, a period list, a date or plain text."""
    arity = OPERATOR_ARITY.get(op, 1)
    if f is None or arity == 0:
        return {"kind": "none"}
    if op == "in_range":
        return {"kind": "select", "options": [(p, translate(f"period_{p}", locale)) for p in PERIODS]}
    if f.type == "boolean":
        return {"kind": "select", "options": [("true", translate("yes", locale)), ("false", translate("no", locale))]}
    if f.type in ("single_select", "multi_select") and arity == 1:
        from ..meta.model import Label

        return {"kind": "select", "options": [(o["value"], Label.of(o["label"], o["value"]).get(locale)) for o in f.opt("options", ())]}
    if arity == 2:
        return {"kind": "text", "placeholder": translate("between_hint", locale)}
    if arity == "n":
        return {"kind": "text", "placeholder": translate("list_hint", locale)}
    if f.type == "date":
        return {"kind": "date"}
    if f.type in ("integer", "decimal", "money", "percent"):
        return {"kind": "number"}
    return {"kind": "text", "placeholder": ""}
