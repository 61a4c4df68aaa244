"""REST endpoints of the workflow engine, and their OpenAPI paths.

``GET  /api/v1/records/<entity>/<id>/transitions``          the transitions the caller may start now
``POST /api/v1/records/<entity>/<id>/transitions/<name>``   start one: ``{"values": {...}, "comment": "..."}``
``GET  /api/v1/approvals``                                  the caller's pending approval tasks
``POST /api/v1/approvals/<task>/<approve|reject|return>``   decide one: ``{"comment": "..."}``
"""
from __future__ import annotations

import uuid

from flask import Blueprint, current_app, g, jsonify

from ..api.auth import request_actor
from ..api.body import json_object
from ..errors import ValidationFailed
from ..i18n_text import text

workflow_api_blueprint = Blueprint("crmkit_workflow_api", __name__, url_prefix="/api/v1")


def _services():
    return current_app.extensions["crmkit"]


@workflow_api_blueprint.before_request
def authenticate():
    g.api_actor = request_actor()  # checks CSRF for cookie-authenticated changes
    g.api_request_id = uuid.uuid4().hex


@workflow_api_blueprint.after_request
def no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


def transition_json(at, locale: str | None = None) -> dict:
    t = at.transition
    return {"name": t.name, "label": t.label.to_json(), "from": list(t.sources), "to": t.target, "guard_ok": at.guard_ok,
            "needs_approval": t.approval is not None, "comment": t.comment,
            "fields": [{"field": f.field, "required": f.required} for f in t.fields]}


@workflow_api_blueprint.get("/records/<entity_key>/<int:record_id>/transitions")
def list_transitions(entity_key: str, record_id: int):
    wf = _services().workflows
    record, available = wf.available(entity_key, record_id, g.api_actor)
    _, _, definition = wf.workflow(entity_key)
    state = record.get("workflow_state") or definition.initial.name
    return jsonify({"state": state, "data": [transition_json(a) for a in available]})


@workflow_api_blueprint.post("/records/<entity_key>/<int:record_id>/transitions/<name>")
def run_transition(entity_key: str, record_id: int, name: str):
    body = json_object(optional=True) or {}
    unknown = set(body) - {"values", "comment"}
    if unknown:
        raise ValidationFailed({k: [text("Unknown key; send \"values\" and \"comment\".", "未知的键；请提交 values 和 comment。")] for k in sorted(unknown)})
    result = _services().workflows.transition(entity_key, record_id, name, g.api_actor, values=body.get("values"), comment=body.get("comment"),
                                              request_id=g.api_request_id)
    status = 202 if result.pending_approval else 200
    return jsonify({"state": result.state, "row_version": result.row_version, "pending_approval": result.pending_approval}), status


@workflow_api_blueprint.get("/approvals")
def list_approvals():
    rows = _services().workflows.approvals(g.api_actor)
    return jsonify({"data": [{"task": r["id"], "entity": r["entity"], "record_id": r["record_id"], "title": r["title"],
                              "transition": r["transition"], "step": r["step"] + 1, "steps": r["steps"], "requested_by": r["requester"],
                              "requested_at": r["requested_at"].isoformat(), "comment": r["comment"] or "", "values": r["field_values"]} for r in rows]})


@workflow_api_blueprint.post("/approvals/<int:task_id>/<decision>")
def decide(task_id: int, decision: str):
    body = json_object(optional=True) or {}
    status = _services().workflows.decide(task_id, decision, g.api_actor, body.get("comment"), request_id=g.api_request_id)
    return jsonify({"status": status})


# --- OpenAPI ---------------------------------------------------------------------------------
def _err(*codes: str) -> dict:
    from ..api.openapi import errors

    return errors(*codes)


def transition_paths(entity) -> dict[str, dict]:
    """OpenAPI paths of an entity that has a workflow."""
    base = f"/records/{entity.key}/{{id}}/transitions"
    id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
    available = {"type": "object", "properties": {
        "state": {"type": "string"},
        "data": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "label": {"type": "object"}, "from": {"type": "array", "items": {"type": "string"}},
            "to": {"type": "string"}, "guard_ok": {"type": "boolean"}, "needs_approval": {"type": "boolean"},
            "comment": {"enum": ["optional", "required"]},
            "fields": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "required": {"type": "boolean"}}}}}}}}}
    result = {"type": "object", "properties": {"state": {"type": "string"}, "row_version": {"type": "integer"},
                                               "pending_approval": {"type": ["integer", "null"]}}}
    tag = [entity.key]
    return {
        base: {"get": {"tags": tag, "summary": f"Transitions of a {entity.label.en} the caller may start now", "operationId": f"transitions_{entity.app}_{entity.name}",
                       "parameters": [id_param], "responses": {"200": {"description": "The current state and the allowed transitions",
                                                                        "content": {"application/json": {"schema": available}}}, **_err("401", "404")}}},
        base + "/{name}": {"post": {
            "tags": tag, "summary": f"Start a workflow transition on a {entity.label.en}", "operationId": f"transition_{entity.app}_{entity.name}",
            "description": "Checks who may act, the guard and the required fields, then moves the state (200), or opens an approval request (202). "
                           "workflow_state cannot be written any other way.",
            "parameters": [id_param, {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": False, "properties": {
                "values": {"type": "object", "description": "Values of the transition's fields"}, "comment": {"type": "string", "maxLength": 2000}}}}}},
            "responses": {"200": {"description": "Moved", "content": {"application/json": {"schema": result}}},
                          "202": {"description": "Waiting for approval", "content": {"application/json": {"schema": result}}},
                          **_err("401", "403", "404", "409", "422")}}},
    }


def approval_paths() -> dict[str, dict]:
    """OpenAPI paths of the approval inbox (present when any workflow is installed)."""
    task = {"type": "object", "properties": {
        "task": {"type": "integer"}, "entity": {"type": "string"}, "record_id": {"type": "integer"}, "title": {"type": "string"},
        "transition": {"type": "string"}, "step": {"type": "integer"}, "steps": {"type": "integer"}, "requested_by": {"type": "string"},
        "requested_at": {"type": "string", "format": "date-time"}, "comment": {"type": "string"}, "values": {"type": "object"}}}
    return {
        "/approvals": {"get": {"tags": ["workflow"], "summary": "The caller's pending approval tasks (including those delegated to them now)",
                               "operationId": "list_approvals",
                               "responses": {"200": {"description": "Pending tasks, oldest first", "content": {"application/json": {"schema": {
                                   "type": "object", "properties": {"data": {"type": "array", "items": task}}}}}}, **_err("401")}}},
        "/approvals/{task}/{decision}": {"post": {
            "tags": ["workflow"], "summary": "Approve, reject or return an approval task", "operationId": "decide_approval",
            "parameters": [{"name": "task", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}},
                           {"name": "decision", "in": "path", "required": True, "schema": {"enum": ["approve", "reject", "return"]}}],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object", "properties": {
                "comment": {"type": "string", "maxLength": 2000, "description": "Required to reject or return"}}}}}},
            "responses": {"200": {"description": "The request's status afterwards", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"status": {"enum": ["approved", "pending", "rejected", "returned"]}}}}}},
                **_err("401", "403", "404", "409", "422")}}},
    }

