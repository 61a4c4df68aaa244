"""OpenAPI for the integration endpoints (bulk writes, sync) and the Idempotency-Key header on every POST."""
from __future__ import annotations

from ..meta.catalog import Catalog
from ..meta.model import EntityDef
from ..records.service import MAX_BULK as MAX_RECORDS
from .openapi_schemas import ref, schema_name

IDEMPOTENCY_PARAM = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Any unique string (1-200 visible ASCII characters). Retrying with the same key and body returns the first response "
                   "(header Idempotent-Replayed: true) instead of doing the work again; the same key with a different body is refused "
                   "with 409 (code idempotency_conflict). Keys are per user and kept for 24 hours.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[\\x21-\\x7e]+$"},
}

STATUSES = ["created", "updated", "unchanged", "skipped", "error"]


def integration_schemas() -> dict[str, dict]:
    return {
        "BulkWriteResult": {
            "type": "object", "required": ["results", "counts"],
            "properties": {
                "results": {"type": "array", "items": {
                    "type": "object", "required": ["index", "status"],
                    "properties": {"index": {"type": "integer", "minimum": 0, "description": "Position in the request's records."},
                                   "status": {"type": "string", "enum": STATUSES},
                                   "id": {"type": "integer"},
                                   "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
                                              "description": "Field name → messages (only with status error)."}}}},
                "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
        },
        "Tombstone": {
            "type": "object", "required": ["id", "deleted", "deleted_at", "updated_at"],
            "properties": {"id": {"type": "integer"}, "deleted": {"const": True}, "deleted_at": {"type": "string", "format": "date-time"},
                           "updated_at": {"type": "string", "format": "date-time"}, "row_version": {"type": "integer"}},
        },
    }


def integration_paths(catalog: Catalog, entity: EntityDef) -> dict[str, dict]:
    from .openapi import WRITE_SECURITY, errors, json_body, json_response, query_param

    key, op = entity.key, schema_name(entity.key)
    tag = [key]
    base = f"/records/{key}"
    unique = [f.name for f in entity.fields if f.unique and catalog.type_of(f).stored]
    records = {"type": "array", "minItems": 1, "maxItems": MAX_RECORDS}
    paths = {
        f"{base}/bulk-create": {"post": {
            "operationId": f"{op}_bulk_create", "summary": f"Create up to {MAX_RECORDS} {entity.plural_label.en}, with a result per record",
            "tags": tag, "security": WRITE_SECURITY,
            "description": "Valid records are created together; invalid ones are reported in their result and not created.",
            "requestBody": json_body({"type": "object", "required": ["records"], "additionalProperties": False,
                                      "properties": {"records": {**records, "items": ref(schema_name(key, "input"))}}}),
            "responses": {"200": json_response("One result per record, in order.", ref("BulkWriteResult")),
                          **errors("400", "401", "403", "404", "409", "413", "415", "422")}}},
        f"{base}/sync": {"get": {
            "operationId": f"{op}_sync", "summary": f"{entity.plural_label.en} changed since a time or a cursor, deletions as tombstones",
            "tags": tag,
            "parameters": [query_param("updated_since", "ISO 8601 timestamp: records updated at or after it.", {"type": "string", "format": "date-time"}),
                           query_param("cursor", "sync_cursor from an earlier call: continue right after it."),
                           query_param("limit", "Page size, 1-200 (default 100).", {"type": "integer", "minimum": 1, "maximum": 200, "default": 100})],
            "responses": {"200": json_response("Changed records in (updated_at, id) order.", {
                "type": "object", "required": ["items", "has_more", "sync_cursor"],
                "properties": {"items": {"type": "array", "items": {"oneOf": [ref("Tombstone"), ref(schema_name(key))]}},
                               "has_more": {"type": "boolean"},
                               "sync_cursor": {"type": ["string", "null"], "description": "Keep it; pass it as cursor next time."}}}),
                          **errors("400", "401", "403", "404")}}},
    }
    if unique:
        paths[f"{base}/bulk-upsert"] = {"post": {
            "operationId": f"{op}_bulk_upsert", "summary": f"Create or update up to {MAX_RECORDS} {entity.plural_label.en} matched by a unique field",
            "tags": tag, "security": WRITE_SECURITY,
            "requestBody": json_body({"type": "object", "required": ["key", "records"], "additionalProperties": False,
                                      "properties": {"key": {"type": "string", "enum": unique},
                                                     "records": {**records, "items": {"type": "object"}}}}),
            "responses": {"200": json_response("One result per record, in order.", ref("BulkWriteResult")),
                          **errors("400", "401", "403", "404", "409", "413", "415", "422")}}}
    return paths


def add_idempotency(paths: dict[str, dict]) -> None:
    """Every POST takes the Idempotency-Key header and may answer 409 for a reused key."""
    from .openapi import errors

    for item in paths.values():
        post = item.get("post")
        if post is None or post.get("operationId") == "security_login":
            continue
        post["parameters"] = [*post.get("parameters", []), IDEMPOTENCY_PARAM]
        post["responses"].setdefault("409", errors("409")["409"])
