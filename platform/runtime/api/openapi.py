"""The OpenAPI 3.1 document of /api/v1, generated per request from the installed metadata.

It lists only the entities the caller may read, so a definition installed or changed a
moment ago shows up on the next request without a restart.
"""
from __future__ import annotations

from ..meta.catalog import Catalog
from ..meta.model import EntityDef
from ..policy import Policy
from ..query.service import MAX_PAGE
from .openapi_integration import add_idempotency, integration_paths, integration_schemas
from .openapi_schemas import common_schemas, entity_schemas, filterable_fields, ref, schema_name, sortable_fields

OPENAPI_VERSION = "3.1.0"
READ_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"cookieAuth": []}]
WRITE_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"cookieAuth": [], "csrfToken": []}]
ERRORS = {
    "400": ("BadRequest", "The body or a query parameter is not valid (codes bad_request, bad_query)."),
    "401": ("Unauthorized", "No valid bearer token or session (code unauthorized)."),
    "403": ("Forbidden", "Not permitted, or a cookie-authenticated write without a valid X-CSRFToken (codes forbidden, csrf_failed)."),
    "404": ("NotFound", "No such entity, record or route (code not_found)."),
    "409": ("Conflict", "The record changed since you read it (code stale_record, details.current_version), or an Idempotency-Key "
                        "was reused for a different request (code idempotency_conflict)."),
    "413": ("TooLarge", "The request body is larger than 2 MiB (code too_large)."),
    "415": ("UnsupportedMediaType", "The body is not JSON (code unsupported_media_type)."),
    "422": ("Unprocessable", "Field values are not valid (code validation_failed, details.fields.<name>)."),
}


def openapi_document(catalog: Catalog, entity_keys: tuple[str, ...], *, cookie_name: str = "session") -> dict:
    schemas = common_schemas()
    paths: dict[str, dict] = {"/security/login": login_path(), "/openapi.json": openapi_path(), "/files": files_path()}
    for key in entity_keys:
        entity = catalog.entities[key]
        schemas.update(entity_schemas(catalog, entity))
        for _, child in catalog.children_of(entity):
            schemas.update(entity_schemas(catalog, child))
        paths.update(entity_paths(catalog, entity))
        paths.update(integration_paths(catalog, entity))
        if catalog.workflow_of(entity) is not None:
            from ..workflow.api import transition_paths

            paths.update(transition_paths(entity))
    if catalog.workflows:
        from ..workflow.api import approval_paths

        paths.update(approval_paths())
    schemas.update(integration_schemas())
    add_idempotency(paths)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "crmkit REST API",
            "version": f"1.{catalog.version}",
            "description": "Generated from the installed entity definitions. Errors are always JSON {code, message, details?}. "
                           "Authenticate with a bearer JWT from POST /security/login, or with the browser session cookie plus "
                           "the X-CSRFToken header on changes.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": READ_SECURITY,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {name: {"description": text, "content": {"application/json": {"schema": ref("Error")}}} for name, text in ERRORS.values()},
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "access_token from POST /api/v1/security/login."},
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": cookie_name, "description": "The browser session of a logged-in user."},
                "csrfToken": {"type": "apiKey", "in": "header", "name": "X-CSRFToken", "description": "Required with cookieAuth on POST, PATCH and DELETE."},
            },
        },
    }


def errors(*codes: str) -> dict:
    return {code: {"$ref": f"#/components/responses/{ERRORS[code][0]}"} for code in codes}


def json_body(schema: dict, description: str = "") -> dict:
    body = {"required": True, "content": {"application/json": {"schema": schema}}}
    if description:
        body["description"] = description
    return body


def json_response(description: str, schema: dict, headers: dict | None = None) -> dict:
    out = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def query_param(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema or {"type": "string"}}


def list_parameters(catalog: Catalog, entity: EntityDef) -> list[dict]:
    return [
        {"name": "filter", "in": "query", "required": False,
         "description": f"JSON filter tree. Fields: {', '.join(filterable_fields(catalog, entity))}. "
                        'Example: {"and":[{"field":"' + entity.title_field + '","op":"contains","value":"a"}]}',
         "content": {"application/json": {"schema": ref("FilterTree")}}},
        query_param("sort", f"Comma-separated, up to 3; prefix - for descending. Sortable: {', '.join(sortable_fields(catalog, entity))}."),
        query_param("search", f"Words matched (all of them) against: {', '.join(entity.search_fields or (entity.title_field,))}."),
        query_param("fields", "Comma-separated field names to return (system columns always come back)."),
        query_param("cursor", "next_cursor or prev_cursor of a previous page with the same sort."),
        query_param("limit", f"Page size, 1-{MAX_PAGE} (default 25).", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 25}),
        query_param("count", "capped (default: exact up to 1000), exact, or none.", {"type": "string", "enum": ["capped", "exact", "none"], "default": "capped"}),
        query_param("deleted", "true lists the recycle bin instead of live records.", {"type": "boolean", "default": False}),
    ]


def entity_paths(catalog: Catalog, entity: EntityDef) -> dict[str, dict]:
    key, op = entity.key, schema_name(entity.key)
    label = entity.plural_label.en
    tag = [key]
    id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
    record = ref(schema_name(key))
    base, item = f"/records/{key}", f"/records/{key}/{{id}}"
    return {
        base: {
            "get": {"operationId": f"{op}_list", "summary": f"List {label}", "tags": tag, "parameters": list_parameters(catalog, entity),
                    "responses": {"200": json_response("One page of records.", ref(schema_name(key, "page"))), **errors("400", "401", "403")}},
            "post": {"operationId": f"{op}_create", "summary": f"Create a {entity.label.en}", "tags": tag, "security": WRITE_SECURITY,
                     "requestBody": json_body(ref(schema_name(key, "input"))),
                     "responses": {"201": json_response("The stored record.", record, {"Location": {"schema": {"type": "string"}, "description": "URL of the new record."}}),
                                   **errors("400", "401", "403", "413", "415", "422")}},
        },
        item: {
            "parameters": [id_param],
            "get": {"operationId": f"{op}_get", "summary": f"Get a {entity.label.en} with its child rows", "tags": tag,
                    "parameters": [query_param("deleted", "true also finds the record while it is in the recycle bin.", {"type": "boolean", "default": False})],
                    "responses": {"200": json_response("The record.", record), **errors("400", "401", "403", "404")}},
            "patch": {"operationId": f"{op}_update", "summary": f"Change a {entity.label.en}", "tags": tag, "security": WRITE_SECURITY,
                      "description": "Only the fields sent change. Child-table fields replace the rows: keep a row by sending its id.",
                      "requestBody": json_body(ref(schema_name(key, "update"))),
                      "responses": {"200": json_response("The stored record.", record), **errors("400", "401", "403", "404", "409", "413", "415", "422")}},
            "delete": {"operationId": f"{op}_delete", "summary": f"Move a {entity.label.en} to the recycle bin", "tags": tag, "security": WRITE_SECURITY,
                       "parameters": [query_param("row_version", "If given, the delete is refused (409) when the record has changed since.", {"type": "integer", "minimum": 1})],
                       "responses": {"204": {"description": "Deleted (restorable)."}, **errors("400", "401", "403", "404", "409", "422")}},
        },
        f"{item}/restore": {
            "parameters": [id_param],
            "post": {"operationId": f"{op}_restore", "summary": f"Restore a {entity.label.en} from the recycle bin", "tags": tag, "security": WRITE_SECURITY,
                     "responses": {"200": json_response("The restored record.", record), **errors("401", "403", "404", "422")}},
        },
        f"{item}/history": {
            "parameters": [id_param],
            "get": {"operationId": f"{op}_history", "summary": "Audit history, newest first", "tags": tag,
                    "parameters": [query_param("limit", "At most this many entries (1-500, default 100).", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100})],
                    "responses": {"200": json_response("Audit entries.", ref("HistoryPage")), **errors("400", "401", "403", "404")}},
        },
        **({f"{item}/unmask": {
            "parameters": [id_param],
            "post": {"operationId": f"{op}_unmask", "summary": "Reveal one masked field (audited; needs the 'may unmask' right)", "tags": tag,
                     "security": WRITE_SECURITY,
                     "requestBody": json_body({"type": "object", "additionalProperties": False, "required": ["field"],
                                               "properties": {"field": {"type": "string", "enum": sorted(masked)}}}),
                     "responses": {"200": json_response("The unmasked value.", {
                         "type": "object", "required": ["id", "field", "value"],
                         "properties": {"id": {"type": "integer"}, "field": {"type": "string"}, "value": {}}}),
                         **errors("400", "401", "403", "404", "415", "422")}},
        }} if (masked := Policy.entity_masks(entity)) else {}),
        f"{base}/bulk-update": {
            "post": {"operationId": f"{op}_bulk_update", "summary": f"Apply the same change to many {label} (all or nothing)", "tags": tag,
                     "security": WRITE_SECURITY, "requestBody": json_body(ref(schema_name(key, "bulk_update"))),
                     "responses": {"200": json_response("How many records matched and changed.", ref("BulkUpdateResult")),
                                   **errors("400", "401", "403", "404", "413", "415", "422")}},
        },
        f"{base}/bulk-delete": {
            "post": {"operationId": f"{op}_bulk_delete", "summary": f"Move many {label} to the recycle bin (all or nothing)", "tags": tag,
                     "security": WRITE_SECURITY, "requestBody": json_body(ref("BulkDelete")),
                     "responses": {"200": json_response("How many records were deleted.", ref("BulkDeleteResult")),
                                   **errors("400", "401", "403", "404", "413", "415", "422")}},
        },
    }


def login_path() -> dict:
    creds = {"type": "object", "required": ["username", "password", "provider"],
             "properties": {"username": {"type": "string"}, "password": {"type": "string"}, "provider": {"type": "string", "enum": ["db"]},
                            "refresh": {"type": "boolean", "description": "Also return a refresh_token."}}}
    tokens = {"type": "object", "properties": {"access_token": {"type": "string"}, "refresh_token": {"type": "string"}}}
    return {"post": {"operationId": "security_login", "summary": "Get a JWT access token (Flask-AppBuilder)", "tags": ["security"], "security": [],
                     "requestBody": json_body(creds),
                     "responses": {"200": json_response("Tokens.", tokens), "401": {"description": "Wrong user name or password."}}}}


def openapi_path() -> dict:
    return {"get": {"operationId": "openapi", "summary": "This document (entities you may read)", "tags": ["meta"],
                    "responses": {"200": {"description": "OpenAPI 3.1 document.", "content": {"application/json": {"schema": {"type": "object"}}}},
                                  **errors("401")}}}


def files_path() -> dict:
    upload = {"type": "object", "required": ["file"], "properties": {"file": {"type": "string", "contentMediaType": "application/octet-stream"}}}
    stored = {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "size": {"type": "integer"},
                                               "content_type": {"type": "string"}}}
    return {"post": {"operationId": "upload_file", "summary": "Upload a file; put its id into an attachment field", "tags": ["files"],
                     "security": WRITE_SECURITY,
                     "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": upload}}},
                     "responses": {"201": json_response("The stored file.", stored), **errors("401", "403", "413", "415", "422")}}}
