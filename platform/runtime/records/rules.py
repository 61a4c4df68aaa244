"""Entity rules on every write: ``validations``, ``required_if`` and ``visible_if``.

Evaluated over the record as it will be (current values overlaid with the change), inside the write
transaction, so a failed rule stores nothing. A rule whose value is NULL (e.g. a date not filled in yet)
does not fail: required-ness is a separate rule. A field whose ``visible_if`` is not true is hidden, and a
hidden field is not required (neither ``required`` nor ``required_if``). The web form applies the same
functions live (``field_states``), so the rules live in one place.
"""
from __future__ import annotations

from typing import Any, Mapping

from sqlalchemy import Connection, Table, select

from ..errors import ValidationFailed
from ..expr import CompiledExpression, compile_expression
from ..i18n_text import text
from ..meta.catalog import Catalog
from ..meta.memo import CatalogMemo
from ..meta.model import EntityDef

REQUIRED = text("This field is required.", "此项必填。")
_MEMO = CatalogMemo()


def compiled(catalog: Catalog, entity: EntityDef, source: str) -> CompiledExpression:
    """A rule compiled once per catalog."""
    def build() -> CompiledExpression:
        tz = getattr(catalog.field_types.get("datetime"), "timezone", "Asia/Shanghai")
        return compile_expression(source, entity, catalog, result="boolean", timezone=tz)
    return _MEMO.get(catalog, (entity.key, source), build)


def has_rules(entity: EntityDef) -> bool:
    return bool(entity.validations) or any(f.required_if or f.visible_if for f in entity.fields)


def _expressions(catalog: Catalog, entity: EntityDef) -> list[CompiledExpression]:
    out = [compiled(catalog, entity, v.rule) for v in entity.validations]
    for f in entity.fields:
        out += [compiled(catalog, entity, s) for s in (f.required_if, f.visible_if) if s]
    return out


def with_lookups(conn: Connection | None, catalog: Catalog, tables: Mapping[str, Table], entity: EntityDef, record: Mapping) -> dict:
    """The record plus ``link.field`` values the entity's rules read, one query per linked record."""
    out = dict(record)
    if conn is None:
        return out
    wanted: dict[str, set[str]] = {}
    for c in _expressions(catalog, entity):
        for link, field in c.lookups:
            wanted.setdefault(link, set()).add(field)
    for link, names in wanted.items():
        target_id = out.get(link)
        if isinstance(target_id, Mapping):
            target_id = target_id.get("id")
        if target_id in (None, ""):
            continue
        tt = tables[entity.field(link).opt("target")]
        row = conn.execute(select(*[tt.c[n] for n in sorted(names)]).where(tt.c.id == target_id)).mappings().first()
        for n in names:
            out[f"{link}.{n}"] = row[n] if row is not None else None
    return out


def field_states(catalog: Catalog, entity: EntityDef, record: Mapping) -> dict[str, tuple[bool, bool]]:
    """name → (visible, required) for the record as it stands."""
    states = {}
    for f in entity.fields:
        visible = True if not f.visible_if else _true(compiled(catalog, entity, f.visible_if), record)
        required = f.required or (bool(f.required_if) and _true(compiled(catalog, entity, f.required_if), record))
        states[f.name] = (visible, visible and required and not f.read_only)
    return states


def rule_errors(catalog: Catalog, entity: EntityDef, record: Mapping, *, check_required: set[str] | None = None) -> dict[str, list]:
    """Per-field errors of the entity's rules. ``check_required``: fields whose required-ness this check
    owns (those with ``required_if`` or ``visible_if``; plain ``required`` is checked with the input)."""
    errors: dict[str, list] = {}
    states = field_states(catalog, entity, record)
    owned = check_required if check_required is not None else {f.name for f in entity.fields if f.required_if or f.visible_if}
    for f in entity.fields:
        visible, required = states[f.name]
        if f.name in owned and required and _empty(record.get(f.name)):
            errors.setdefault(f.name, []).append(REQUIRED)
    for v in entity.validations:
        if compiled(catalog, entity, v.rule).evaluate(record) is False:
            message = text(v.message.en, v.message.zh)
            for name in (v.fields or ("_schema",)):
                if name == "_schema" or states.get(name, (True, False))[0]:
                    errors.setdefault(name, []).append(message)
    return errors


def check_rules(conn: Connection, catalog: Catalog, tables: Mapping[str, Table], entity: EntityDef, record: Mapping[str, Any]) -> None:
    """Raise ``ValidationFailed`` when a rule of ``entity`` fails for ``record`` (the values to be stored)."""
    if not has_rules(entity):
        return
    errors = rule_errors(catalog, entity, with_lookups(conn, catalog, tables, entity, record))
    if errors:
        raise ValidationFailed(errors)


def _true(c: CompiledExpression, record: Mapping) -> bool:
    return c.evaluate(record) is True


def _empty(v: Any) -> bool:
    return v is None or v == "" or v == []
