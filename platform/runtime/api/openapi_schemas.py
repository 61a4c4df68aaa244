"""Component schemas of the OpenAPI document, built from entity metadata.

Each field's schema is its type's ``json_schema(f)`` plus its label, help text and the
filter operators it supports. Names are ``<app>_<entity>`` (record), ``..._input``
(create, and child rows), ``..._update`` (PATCH) and ``..._page`` (list).
"""
from __future__ import annotations

from typing import Any

from ..fields import OPERATOR_ARITY, effective_operators
from ..meta.catalog import Catalog
from ..meta.model import EntityDef, FieldDef

REF = "#/components/schemas/"
INT64_MAX = 2**63 - 1

SYSTEM_PROPERTIES: dict[str, dict] = {
    "id": {"type": "integer", "minimum": 1, "readOnly": True},
    "row_version": {"type": "integer", "minimum": 1, "readOnly": True, "description": "Send it back in PATCH; a changed version means someone else edited the record."},
    "created_at": {"type": "string", "format": "date-time", "readOnly": True},
    "updated_at": {"type": "string", "format": "date-time", "readOnly": True},
    "created_by": {"type": ["integer", "null"], "readOnly": True},
    "updated_by": {"type": ["integer", "null"], "readOnly": True},
    "owner_id": {"type": ["integer", "null"], "readOnly": True},
    "org_unit_id": {"type": ["integer", "null"], "readOnly": True},
    "deleted_at": {"type": ["string", "null"], "format": "date-time", "readOnly": True, "description": "Set while the record is in the recycle bin."},
    "deleted_by": {"type": ["integer", "null"], "readOnly": True},
    "workflow_state": {"type": ["string", "null"], "readOnly": True},
}
SYSTEM_FILTERABLE = ("id", "created_at", "updated_at", "created_by", "owner_id")
SYSTEM_SORTABLE = ("id", "created_at", "updated_at")


# Field schemas describe real values; a masked one is text of its own shape whatever the field's type.
MASKED_NOTE = ("A field masked for the caller (its definition's mask, or a role that reads it masked) comes as masked text, "
               "e.g. 138****5678 or ****, whatever its type.")


def schema_name(entity_key: str, suffix: str = "") -> str:
    return entity_key.replace(".", "_") + (f"_{suffix}" if suffix else "")


def ref(name: str) -> dict:
    return {"$ref": REF + name}


def common_schemas() -> dict[str, dict]:
    condition = {
        "type": "object", "required": ["field", "op"], "additionalProperties": False,
        "properties": {
            "field": {"type": "string", "description": "A field name of the entity, or id, created_at, updated_at, created_by, owner_id."},
            "op": {"type": "string", "enum": list(OPERATOR_ARITY)},
            "value": {"description": "One value; [low, high] for between; a list for in, not_in, contains_any, contains_all; a period name for in_range; omitted for is_empty / is_not_empty."},
        },
    }
    return {
        "Error": {
            "type": "object", "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "Stable machine-readable code, e.g. validation_failed, bad_query, stale_record."},
                "message": {"type": "string", "description": "What went wrong and what to do about it."},
                "details": {"type": "object", "description": "validation_failed: {fields: {name: [messages]}}; stale_record: {current_version}.",
                            "properties": {"fields": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
                                           "current_version": {"type": "integer"}}},
            },
        },
        "FilterCondition": condition,
        "FilterTree": {
            "description": "A condition, or {\"and\": [...]} / {\"or\": [...]} of filter trees (at most 5 levels, 50 conditions).",
            "oneOf": [
                ref("FilterCondition"),
                {"type": "object", "required": ["and"], "additionalProperties": False, "properties": {"and": {"type": "array", "items": ref("FilterTree")}}},
                {"type": "object", "required": ["or"], "additionalProperties": False, "properties": {"or": {"type": "array", "items": ref("FilterTree")}}},
            ],
        },
        "HistoryPage": {
            "type": "object", "required": ["items"],
            "properties": {"items": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "at": {"type": "string", "format": "date-time"},
                    "action": {"type": "string", "enum": ["create", "update", "delete", "restore"]},
                    "actor_id": {"type": ["integer", "null"]},
                    "actor": {"type": "string"},
                    "changes": {"type": "object", "description": "field → [old, new]; child tables → {added, changed, removed}."},
                },
            }}},
        },
        "BulkDelete": {
            "type": "object", "required": ["ids"], "additionalProperties": False,
            "properties": {"ids": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {"type": "integer", "minimum": 1}}},
        },
        "BulkDeleteResult": {"type": "object", "properties": {"deleted": {"type": "integer"}}},
        "BulkUpdateResult": {"type": "object", "properties": {"matched": {"type": "integer"}, "changed": {"type": "integer"}}},
    }


def field_schema(catalog: Catalog, f: FieldDef, *, output: bool) -> dict:
    ft = catalog.type_of(f)
    if f.type == "child_table":
        child = f.opt("entity")
        schema: dict[str, Any] = {"type": "array", "items": ref(schema_name(child) if output else schema_name(child, "input"))}
    else:
        schema = dict(ft.json_schema(f))
    schema["title"] = f.label.en
    notes = [f"{f.label.zh} / {f.label.en} ({f.type})."]
    if f.help.en:
        notes.append(f.help.en)
    if (ft.stored or ft.computed) and ft.operators:
        notes.append(f"Filter operators: {', '.join(effective_operators(ft, f))}.")
        if ft.sortable:
            notes.append("Sortable.")
    if f.unique:
        notes.append("Unique among live records.")
    schema["description"] = " ".join(notes)
    if f.read_only:
        schema["readOnly"] = True
    if f.default is not None and not output:
        schema["default"] = f.default
    return schema


def entity_schemas(catalog: Catalog, entity: EntityDef) -> dict[str, dict]:
    """The record, input, update and page schemas of one entity (child entities: record and input)."""
    name = schema_name(entity.key)
    record_props = dict(SYSTEM_PROPERTIES)
    if entity.is_child:
        record_props.update(parent_id={"type": "integer", "readOnly": True}, sort_order={"type": "integer", "readOnly": True})
    for f in entity.fields:
        record_props[f.name] = field_schema(catalog, f, output=True)
    link_fields = [f.name for f in entity.fields if f.type in ("link", "user", "org_unit")]
    record_props["_labels"] = {
        "type": "object", "readOnly": True, "additionalProperties": {"type": "string"},
        "description": "Display titles of linked records and users, by field name: " + ", ".join(link_fields + ["created_by", "updated_by", "owner_id"]) + ".",
    }
    writable = [f for f in entity.fields if not f.read_only and f.type != "sequence"]
    input_props = {f.name: field_schema(catalog, f, output=False) for f in writable}
    if entity.is_child:
        input_props["id"] = {"type": "integer", "minimum": 1, "description": "Id of an existing row to keep or change; omit for a new row. Rows left out are removed."}
    required = [f.name for f in writable if f.required and f.default is None]
    schemas: dict[str, dict] = {
        name: {"type": "object", "title": entity.label.en,
               "description": f"{entity.label.zh} / {entity.label.en}. {MASKED_NOTE}",
               "required": ["id", "row_version", "created_at", "updated_at"], "properties": record_props},
        schema_name(entity.key, "input"): {"type": "object", "title": f"New {entity.label.en}", "additionalProperties": False,
                                           "required": required, "properties": input_props},
    }
    if not entity.is_child:
        update_props = {"row_version": {"type": "integer", "minimum": 1, "description": "The row_version you read; required."}}
        update_props.update({k: {kk: vv for kk, vv in v.items() if kk != "default"} for k, v in input_props.items()})
        schemas[schema_name(entity.key, "update")] = {
            "type": "object", "title": f"Changes to a {entity.label.en}", "additionalProperties": False,
            "required": ["row_version"], "properties": update_props,
        }
        schemas[schema_name(entity.key, "page")] = {
            "type": "object", "required": ["items", "next_cursor", "prev_cursor", "total", "total_exact"],
            "properties": {
                "items": {"type": "array", "items": ref(name)},
                "next_cursor": {"type": ["string", "null"], "description": "Pass as cursor for the next page; null on the last page."},
                "prev_cursor": {"type": ["string", "null"], "description": "Pass as cursor for the previous page; null on the first page."},
                "total": {"type": ["integer", "null"], "description": "Matching records (capped at 1000 unless count=exact; null with count=none)."},
                "total_exact": {"type": "boolean", "description": "False when total is a lower bound (capped) or absent."},
            },
        }
        schemas[schema_name(entity.key, "bulk_update")] = {
            "type": "object", "required": ["ids", "values"], "additionalProperties": False,
            "properties": {"ids": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {"type": "integer", "minimum": 1}},
                           "values": {"type": "object", "additionalProperties": False, "minProperties": 1,
                                      "properties": {k: v for k, v in update_props.items() if k != "row_version" and entity.field(k).type != "child_table"}}},
        }
    return schemas


def filterable_fields(catalog: Catalog, entity: EntityDef) -> list[str]:
    return list(SYSTEM_FILTERABLE) + [f.name for f in entity.fields if (catalog.type_of(f).stored or catalog.type_of(f).computed) and catalog.type_of(f).operators]


def sortable_fields(catalog: Catalog, entity: EntityDef) -> list[str]:
    return list(SYSTEM_SORTABLE) + [f.name for f in entity.fields if (catalog.type_of(f).stored or catalog.type_of(f).computed) and catalog.type_of(f).sortable]
