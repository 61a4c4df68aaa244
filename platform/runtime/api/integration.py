"""Integration endpoints: bulk create/upsert with per-record results, and incremental sync.

- ``POST /records/<entity>/bulk-create`` ``{"records": [...]}`` and ``POST /records/<entity>/bulk-upsert``
  ``{"key": "mobile", "records": [...]}``: at most ``MAX_RECORDS`` per call, through ``RecordService.write_many``
  (the same validation, policy, audit and events as single writes). Valid records commit together; each
  record gets a result (``created`` / ``updated`` / ``unchanged`` / ``error`` with field errors).
- ``GET /records/<entity>/sync?updated_since=…&cursor=…&limit=…``: every record changed at or after
  ``updated_since`` in (updated_at, id) order, deleted ones as tombstones, through the query service (row scope,
  readable fields and masking apply). ``sync_cursor`` always marks the end of the page: keep it, and ask again
  with it later to get only what changed since.
"""
from __future__ import annotations

from flask import g, jsonify, request

from ..errors import BadQuery, ValidationFailed
from ..query.cursor import encode_cursor
from ..records.service import MAX_BULK
from .blueprint import _actor, _entity, _services, api_blueprint
from .body import json_object
from .params import bounded_int, check_known, single
from .serialize import plain, record_json

MAX_RECORDS = MAX_BULK
SYNC_SIG = "updated_at,id"
DEFAULT_SYNC_LIMIT = 100


def _records_body(allowed: set[str]) -> dict:
    data = json_object()
    errors = {k: [f"Unknown field; send {' and '.join(sorted(allowed))}."] for k in sorted(set(data) - allowed)}
    records = data.get("records")
    if not isinstance(records, list) or not records:
        errors["records"] = ["Send records as a non-empty list of objects."]
    elif len(records) > MAX_RECORDS:
        errors["records"] = [f"At most {MAX_RECORDS} records per call; split the list."]
    elif not all(isinstance(r, dict) for r in records):
        errors["records"] = ["Each record must be an object of field names to values."]
    if errors:
        raise ValidationFailed(errors)
    return data


def _bulk(entity_key: str, mode: str):
    catalog, entity = _entity(entity_key)
    check_known(request.args, ())
    data = _records_body({"records", "key"} if mode == "upsert" else {"records"})
    key = data.get("key")
    if mode == "upsert" and not isinstance(key, str):
        raise ValidationFailed({"key": ["Name the unique field that matches records (e.g. \"mobile\")."]})
    actor = _actor()
    results = _services().records.write_many(entity.key, data["records"], actor, mode=mode, key=key, request_id=g.api_request_id)
    items = [r.to_json(actor.locale if request.headers.get("Accept-Language", "").startswith("zh") else "en") for r in results]
    counts = {s: sum(1 for r in results if (r.action if not r.errors else "error") == s) for s in ("created", "updated", "unchanged", "skipped", "error")}
    for item in items:
        if "errors" in item:
            item["status"] = "error"
    return jsonify({"results": items, "counts": counts})


@api_blueprint.post("/records/<entity_key>/bulk-create")
def bulk_create(entity_key: str):
    return _bulk(entity_key, "insert")


@api_blueprint.post("/records/<entity_key>/bulk-upsert")
def bulk_upsert(entity_key: str):
    return _bulk(entity_key, "upsert")


@api_blueprint.get("/records/<entity_key>/sync")
def sync_records(entity_key: str):
    catalog, entity = _entity(entity_key)
    check_known(request.args, ("updated_since", "cursor", "limit"))
    since, cursor = single(request.args, "updated_since"), single(request.args, "cursor") or None
    raw = single(request.args, "limit")
    limit = DEFAULT_SYNC_LIMIT if raw is None else bounded_int(raw, "limit", 1, 200)
    tree = None
    if since:
        tree = {"field": "updated_at", "op": "gte", "value": since}
    elif since is not None:
        raise BadQuery("updated_since must be an ISO 8601 timestamp, e.g. 2026-01-31T08:00:00Z.")
    page = _services().queries.list(entity.key, _actor(), filter=tree, sort=["updated_at"], cursor=cursor, limit=limit,
                                    deleted="include", count="none", labels=False)
    items = []
    for row in page.rows:
        if row.get("deleted_at") is not None:
            items.append({"id": row["id"], "deleted": True, "deleted_at": plain(row["deleted_at"]), "updated_at": plain(row["updated_at"]),
                          "row_version": row["row_version"]})
        else:
            out = record_json(catalog, entity, row)
            out.pop("_labels", None)
            out["deleted"] = False
            items.append(out)
    sync_cursor = cursor
    if page.rows:
        last = page.rows[-1]
        sync_cursor = encode_cursor(SYNC_SIG, [plain(last["updated_at"]), last["id"]], "after")
    return jsonify({"items": items, "has_more": page.next_cursor is not None, "sync_cursor": sync_cursor})
