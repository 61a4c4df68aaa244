"""Compile a JSON filter tree into a SQL clause.

A tree is ``{"and": [...]}``, ``{"or": [...]}`` or ``{"field": name, "op": op, "value": v}``.
Column names come only from the entity's allowlist; every value is bound.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import FromClause, and_, or_, true
from sqlalchemy.sql import ColumnElement

from ..errors import BadQuery
from ..fields import FilterContext
from ..fields.base import contains_nul, field_name
from ..i18n_text import Text, text
from ..meta.catalog import Catalog
from ..meta.model import EntityDef, FieldDef, Label

MAX_DEPTH = 5
MAX_CONDITIONS = 50

SYSTEM_FIELDS = {
    "id": FieldDef(id="sys_id", name="id", type="integer", label=Label("编号", "ID")),
    "created_at": FieldDef(id="sys_created_at", name="created_at", type="datetime", label=Label("创建时间", "Created")),
    "updated_at": FieldDef(id="sys_updated_at", name="updated_at", type="datetime", label=Label("更新时间", "Updated")),
    "created_by": FieldDef(id="sys_created_by", name="created_by", type="user", label=Label("创建人", "Created by")),
    "owner_id": FieldDef(id="sys_owner_id", name="owner_id", type="user", label=Label("负责人", "Owner")),
}


def resolve_field(catalog: Catalog, entity: EntityDef, name: Any, readable: tuple[str, ...]) -> FieldDef:
    if not isinstance(name, str):
        raise BadQuery(text("A filter condition needs \"field\" as a field name.", "筛选条件需要用 \"field\" 指定字段名。"))
    if name in SYSTEM_FIELDS:
        return SYSTEM_FIELDS[name]
    f = entity.field_map.get(name)
    if f is None or name not in readable or not (catalog.type_of(f).stored or catalog.type_of(f).computed):
        raise BadQuery(text("Cannot filter on '{name}': {entity} has no such field you can read.", "不能按“{name}”筛选：{entity}没有这个字段，或你无权读取。",
                            name=name, entity=Text(entity.key, entity.label.zh)))
    return f


def compile_filter(catalog: Catalog, entity: EntityDef, table: FromClause, tree: Any, ctx: FilterContext, readable: tuple[str, ...]) -> ColumnElement:
    count = [0]

    def walk(node: Any, depth: int) -> ColumnElement:
        if depth > MAX_DEPTH:
            raise BadQuery(text("The filter is nested more than {n} levels deep.", "筛选条件嵌套超过 {n} 层，请简化。", n=MAX_DEPTH))
        if not isinstance(node, dict):
            raise BadQuery(text("A filter is an object: {\"and\": [...]}, {\"or\": [...]} or {\"field\", \"op\", \"value\"}.",
                                "筛选条件应为对象：{\"and\": [...]}、{\"or\": [...]} 或 {\"field\", \"op\", \"value\"}。"))
        if "and" in node or "or" in node:
            key = "and" if "and" in node else "or"
            if set(node) != {key} or not isinstance(node[key], list):
                raise BadQuery(text("\"{key}\" takes a list of conditions and nothing else.", "\"{key}\" 只能包含一个条件列表，不能有其他键。", key=key))
            parts = [walk(n, depth + 1) for n in node[key]]
            if not parts:
                return true()
            return and_(*parts) if key == "and" else or_(*parts)
        extra = set(node) - {"field", "op", "value"}
        if extra:
            raise BadQuery(text("Unknown keys in filter condition: {keys}.", "筛选条件中有未知的键：{keys}。", keys=", ".join(sorted(map(str, extra)))))
        count[0] += 1
        if count[0] > MAX_CONDITIONS:
            raise BadQuery(text("A filter has at most {n} conditions.", "筛选条件最多 {n} 个。", n=MAX_CONDITIONS))
        f = resolve_field(catalog, entity, node.get("field"), readable)
        op = node.get("op")
        if not isinstance(op, str):
            raise BadQuery(text("The condition on '{field}' needs \"op\".", "“{field}”的条件需要指定 \"op\"（运算符）。", field=field_name(f)))
        if contains_nul(node.get("value")):
            raise BadQuery(text("The value for '{field}' contains the NUL character (\\u0000), which no field can hold.",
                                "“{field}”的值包含 NUL 字符（\\u0000），任何字段都无法保存，请删除它。", field=field_name(f)))
        ft = catalog.field_types.get(f.type)
        return ft.filter_clause(f, table.c[f.name], op, node.get("value"), ctx)

    return walk(tree, 0)
