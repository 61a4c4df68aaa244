"""The REST API generated from metadata (/api/v1).

URL scheme: ``/api/v1/records/<app>.<entity>`` and ``.../<id>``; see docs/api.md.
Reads go through the query service, writes through the record service, and both ask
the policy point; this module only translates HTTP to those calls and back.
"""
from __future__ import annotations

import re
import uuid

from flask import Blueprint, current_app, g, jsonify, request, url_for

from ..actor import Actor
from ..errors import RecordNotFound, ValidationFailed
from ..meta.catalog import Catalog
from ..meta.model import EntityDef
from ..services import Services
from .auth import request_actor
from .body import INT64, MAX_BODY_BYTES, json_object
from .errors import NotAuthenticated, UnsupportedMediaType
from .openapi import openapi_document
from .params import bounded_int, check_known, flag, list_arguments, single
from .serialize import history_json, page_json, record_json

api_blueprint = Blueprint("crmkit_api", __name__, url_prefix="/api/v1")

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
MAX_HISTORY = 500


@api_blueprint.before_request
def authenticate():
    if request.endpoint != "crmkit_api.upload_file":  # uploads keep the app-wide limit (max upload size)
        request.max_content_length = MAX_BODY_BYTES
    supplied = request.headers.get("X-Request-ID", "")
    g.api_request_id = supplied if REQUEST_ID.match(supplied) else uuid.uuid4().hex
    g.api_actor = request_actor()


@api_blueprint.after_request
def tag_response(response):
    if "api_request_id" in g:
        response.headers["X-Request-ID"] = g.api_request_id
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@api_blueprint.errorhandler(NotAuthenticated)
def not_authenticated(exc: NotAuthenticated):
    return jsonify(exc.to_dict()), 401, {"WWW-Authenticate": 'Bearer realm="crmkit"'}


# --- records ---------------------------------------------------------------------------
@api_blueprint.get("/records/<entity_key>")
def list_records(entity_key: str):
    catalog, entity = _entity(entity_key)
    page = _services().queries.list(entity.key, _actor(), **list_arguments(request.args))
    return jsonify(page_json(catalog, entity, page))


@api_blueprint.post("/records/<entity_key>")
def create_record(entity_key: str):
    catalog, entity = _entity(entity_key)
    check_known(request.args, ())
    data = json_object()
    record_id = _services().records.create(entity.key, data, _actor(), request_id=g.api_request_id)
    location = url_for("crmkit_api.get_record", entity_key=entity.key, record_id=record_id)
    return jsonify(_stored(catalog, entity, record_id)), 201, {"Location": location}


@api_blueprint.get("/records/<entity_key>/<int:record_id>")
def get_record(entity_key: str, record_id: int):
    catalog, entity = _entity(entity_key)
    check_known(request.args, ("deleted",))
    row = _services().queries.get(entity.key, _record_id(entity, record_id), _actor(), deleted=flag(request.args, "deleted"))
    return jsonify(record_json(catalog, entity, row))


@api_blueprint.patch("/records/<entity_key>/<int:record_id>")
def update_record(entity_key: str, record_id: int):
    catalog, entity = _entity(entity_key)
    check_known(request.args, ())
    data = json_object()
    version = _version(data.pop("row_version", None), required=True)
    _services().records.update(entity.key, _record_id(entity, record_id), data, _actor(), expected_version=version,
                               request_id=g.api_request_id)
    return jsonify(_stored(catalog, entity, record_id))


@api_blueprint.delete("/records/<entity_key>/<int:record_id>")
def delete_record(entity_key: str, record_id: int):
    _, entity = _entity(entity_key)
    check_known(request.args, ("row_version",))
    body = json_object(optional=True) or {}
    unknown = sorted(set(body) - {"row_version"})
    if unknown:
        raise ValidationFailed({k: ["Unknown field; a delete only takes row_version."] for k in unknown})
    raw = single(request.args, "row_version")
    version = _version(raw if raw is not None else body.get("row_version"), required=False, from_query=raw is not None)
    _services().records.delete(entity.key, _record_id(entity, record_id), _actor(), expected_version=version,
                               request_id=g.api_request_id)
    return "", 204


@api_blueprint.post("/records/<entity_key>/<int:record_id>/restore")
def restore_record(entity_key: str, record_id: int):
    catalog, entity = _entity(entity_key)
    check_known(request.args, ())
    _services().records.restore(entity.key, _record_id(entity, record_id), _actor(), request_id=g.api_request_id)
    return jsonify(_stored(catalog, entity, record_id))


@api_blueprint.get("/records/<entity_key>/<int:record_id>/history")
def record_history(entity_key: str, record_id: int):
    _, entity = _entity(entity_key)
    check_known(request.args, ("limit",))
    raw = single(request.args, "limit")
    limit = 100 if raw is None else bounded_int(raw, "limit", 1, MAX_HISTORY)
    services, actor, rid = _services(), _actor(), _record_id(entity, record_id)
    services.queries.get(entity.key, rid, actor, deleted=True)  # 404 unless the record exists and is visible
    return jsonify(history_json(services.queries.history(entity.key, rid, actor, limit=limit)))


@api_blueprint.post("/records/<entity_key>/<int:record_id>/unmask")
def unmask_field(entity_key: str, record_id: int):
    """The real value of one masked field (e.g. an ID number), for callers with the 'may unmask' right; audited."""
    catalog, entity = _entity(entity_key)
    check_known(request.args, ())
    body = json_object()
    problems = {k: ["Unknown key: send only 'field'."] for k in sorted(set(body) - {"field"})}
    if not isinstance(body.get("field"), str):
        problems["field"] = ["Required: the name of a masked field, e.g. {\"field\": \"id_number\"}."]
    if problems:
        raise ValidationFailed(problems)
    name = body["field"]
    value = _services().queries.unmask(entity.key, _record_id(entity, record_id), name, _actor(), request_id=g.api_request_id)
    f = entity.field(name)
    return jsonify({"id": record_id, "field": name, "value": None if value is None else catalog.type_of(f).to_json(f, value)})


@api_blueprint.post("/records/<entity_key>/bulk-update")
def bulk_update(entity_key: str):
    _, entity = _entity(entity_key)
    check_known(request.args, ())
    data = _bulk_body({"ids", "values"})
    values = data.get("values")
    if not isinstance(values, dict):
        raise ValidationFailed({"values": ["Send the changes as an object of field names to values."]})
    changed = _services().records.bulk_update(entity.key, data["ids"], values, _actor(), request_id=g.api_request_id)
    return jsonify({"matched": len(data["ids"]), "changed": changed})


@api_blueprint.post("/records/<entity_key>/bulk-delete")
def bulk_delete(entity_key: str):
    _, entity = _entity(entity_key)
    check_known(request.args, ())
    data = _bulk_body({"ids"})
    deleted = _services().records.bulk_delete(entity.key, data["ids"], _actor(), request_id=g.api_request_id)
    return jsonify({"deleted": deleted})


# --- files -----------------------------------------------------------------------------
@api_blueprint.post("/files")
def upload_file():
    """Store one uploaded file (multipart field ``file``); attachment fields then take its id."""
    check_known(request.args, ())
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType("Upload the file as multipart/form-data in a field named 'file'.")
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise ValidationFailed({"file": ["Choose a file to upload (multipart field 'file')."]})
    services = _services()
    stored = services.records.store_file(services.settings.upload_dir, upload.filename, upload.mimetype, upload.read(), _actor())
    return jsonify(stored), 201


# --- OpenAPI ---------------------------------------------------------------------------
@api_blueprint.get("/openapi.json")
def openapi():
    check_known(request.args, ())
    services, actor = _services(), _actor()
    catalog = services.store.catalog()
    readable = [e for e in catalog.entities.values() if not e.is_child and services.policy.allows(actor, e, "read")]
    return jsonify(openapi_document(catalog, tuple(e.key for e in readable), cookie_name=current_app.config.get("SESSION_COOKIE_NAME", "session")))


# --- helpers ---------------------------------------------------------------------------
def _services() -> Services:
    return current_app.extensions["crmkit"]


def _actor() -> Actor:
    return g.api_actor


def _entity(key: str) -> tuple[Catalog, EntityDef]:
    catalog = _services().store.catalog()
    entity = catalog.entity(key)
    if entity.is_child:
        raise RecordNotFound(f"{entity.label.en} rows have no endpoint of their own; read and write them through {entity.parent}.")
    return catalog, entity


def _record_id(entity: EntityDef, record_id: int) -> int:
    if not 1 <= record_id <= INT64[1]:
        raise RecordNotFound(f"{entity.label.en} #{record_id} does not exist.")
    return record_id


def _version(raw, *, required: bool, from_query: bool = False) -> int | None:
    if raw is None:
        if required:
            raise ValidationFailed({"row_version": ["Send the row_version of the record you edited, so that concurrent changes are not overwritten."]})
        return None
    if from_query and isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw.strip())
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= INT64[1]:
        raise ValidationFailed({"row_version": ["row_version must be the record's version number (a whole number from 1)."]})
    return raw


def _bulk_body(allowed: set[str]) -> dict:
    data = json_object()
    errors = {k: [f"Unknown field; send {' and '.join(sorted(allowed))}."] for k in sorted(set(data) - allowed)}
    ids = data.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= INT64[1] for i in ids):
        errors["ids"] = ["Send ids as a non-empty list of record ids (whole numbers)."]
    if errors:
        raise ValidationFailed(errors)
    return data


def _stored(catalog: Catalog, entity: EntityDef, record_id: int) -> dict:
    """The record as stored, or just its id when the actor may write but not read."""
    services, actor = _services(), _actor()
    if not services.policy.allows(actor, entity, "read"):
        return {"id": record_id}
    return record_json(catalog, entity, services.queries.get(entity.key, record_id, actor))


# Integration endpoints (bulk writes, sync) and Idempotency-Key handling live in their own modules.
from . import integration  # noqa: E402,F401
from .idempotency import install_idempotency  # noqa: E402

install_idempotency(api_blueprint)
