"""Definition checks for everything written in the expression language: formulas, lookups, rollup
filters, ``required_if``/``visible_if`` and entity ``validations``. Problems are (file, JSON pointer,
message) like every other definition error; an expression problem names the character position."""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from .model import EntityDef, frozen

NUMERIC = {"integer", "decimal", "money", "percent"}


def _expr_problem(source: str, pointer: str, exc) -> tuple[str, str, str]:
    where = f" (at character {exc.position})" if exc.position is not None else ""
    return (source, pointer, f"{exc.message}{where}")


def resolve_lookups(entities: Mapping[str, EntityDef]) -> tuple[dict[str, EntityDef], list]:
    """Fill in each lookup field's ``expression`` (``link.field``) and ``result`` from the link's target."""
    from ..expr.types import FIELD_TYPES

    out, problems = {}, []
    for key, e in entities.items():
        fields = list(e.fields)
        for i, f in enumerate(fields):
            if f.type != "lookup":
                continue
            at = f"/fields/{i}"
            link = e.field_map.get(f.opt("link"))
            if link is None or link.type != "link":
                problems.append((e.source, f"{at}/link", f"'{f.opt('link')}' is not a link field of {e.key}"))
                continue
            target = entities.get(link.opt("target"))
            tf = target.field_map.get(f.opt("field")) if target else None
            xt = FIELD_TYPES.get(tf.type) if tf else None
            if tf is None or xt is None:
                problems.append((e.source, f"{at}/field", f"'{f.opt('field')}' is not a single-valued stored field of {link.opt('target')}"))
                continue
            kind = "integer" if xt.integral else xt.kind
            fields[i] = replace(f, config=frozen({**f.config, "expression": f"{link.name}.{tf.name}", "result": kind}))
        out[key] = replace(e, fields=tuple(fields)) if fields != list(e.fields) else e
    return out, problems


def expression_problems(e: EntityDef, entities: Mapping[str, EntityDef], field_types=None) -> list[tuple[str, str, str]]:
    from ..expr import ExpressionError, compile_expression

    out = []

    def check(source: str, pointer: str, entity: EntityDef = e, result: str | None = None, sql: bool = False) -> None:
        try:
            compiled = compile_expression(source, entity, entities, result=result)
        except ExpressionError as exc:
            out.append(_expr_problem(e.source, pointer, exc))
            return
        if sql and not compiled.sql_compilable:
            out.append((e.source, pointer, "a rollup filter must be computable by the database; this one uses a Python-only function"))

    names = set(e.field_map)
    for i, f in enumerate(e.fields):
        at = f"/fields/{i}"
        if f.type == "formula":
            check(f.opt("expression"), f"{at}/expression", result=f.opt("result"))
        if f.required_if:
            check(f.required_if, f"{at}/required_if", result="boolean")
        if f.visible_if:
            check(f.visible_if, f"{at}/visible_if", result="boolean")
        if f.type == "rollup":
            out.extend(_rollup_problems(e, f, at, entities, check, field_types))
    for j, v in enumerate(e.validations):
        check(v.rule, f"/validations/{j}/rule", result="boolean")
        for k, name in enumerate(v.fields):
            if name not in names:
                out.append((e.source, f"/validations/{j}/fields/{k}", f"'{name}' is not a field of {e.key}"))
    return out


def _rollup_problems(e: EntityDef, f, at: str, entities, check, field_types) -> list:
    src = entities.get(f.opt("source"))
    if src is None:
        return [(e.source, f"{at}/source", f"rollup source '{f.opt('source')}' is not a known entity")]
    out = []
    if f.opt("link") and src.is_child:
        out.append((e.source, f"{at}/source", f"{src.key} is a child table; a rollup over its rows belongs on its parent {src.parent}"))
    elif f.opt("link"):
        link = src.field_map.get(f.opt("link"))
        if link is None or link.type != "link" or link.opt("target") != e.key:
            out.append((e.source, f"{at}/link", f"'{f.opt('link')}' is not a field of {src.key} linking to {e.key}"))
    elif not (src.is_child and src.parent == e.key):
        out.append((e.source, f"{at}/link", f"{src.key} is not a child table of {e.key}; name the link field of {src.key} that points here"))
    if f.opt("function") != "count":
        sf = src.field_map.get(f.opt("field") or "")
        if sf is None or sf.type not in NUMERIC:
            out.append((e.source, f"{at}/field", f"{f.opt('function')} needs \"field\": a number field of {src.key}"))
    flt = f.opt("filter")
    if isinstance(flt, str):
        check(flt, f"{at}/filter", entity=src, result="boolean", sql=True)
    elif flt is not None and field_types is not None:
        from .compile import filter_problems

        out.extend((e.source, f"{at}/filter{p}", m) for p, m in filter_problems(flt, src, field_types))
    return out
