"""``Idempotency-Key`` on every API POST: a retried request gets the first response instead of doing it twice.

The key is stored per user with a hash of the request (method, path, query, body) and, once the request is
done, the response. The same key again with the same request replays the stored response (header
``Idempotent-Replayed: true``); with a different request it is refused with 409. A request still in progress
under the key also gets 409. Server errors (5xx) are not stored, so they can be retried. Keys expire after
``TTL``; expired keys are removed by the next request that uses a key.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re

from flask import Blueprint, Response, current_app, g, request
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ..db import inserted_id
from ..errors import CrmkitError
from ..i18n_text import text
from ..imports.tables import idempotency_key
from .errors import BadBody

TTL = dt.timedelta(hours=24)
ABANDONED = dt.timedelta(minutes=5)  # a claim never completed (a killed worker) can be taken over after this
KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")
HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
KEPT_HEADERS = ("Location", "Content-Type")


class IdempotencyConflict(CrmkitError):
    code = "idempotency_conflict"
    status = 409


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _request_hash() -> str:
    h = hashlib.sha256()
    for part in (request.method, request.path, "&".join(sorted(f"{k}={v}" for k, v in request.args.items(multi=True)))):
        h.update(part.encode("utf-8", "surrogatepass") + b"\x00")
    if request.mimetype == "multipart/form-data":
        # The boundary is random per request, so the raw body differs on every retry: hash the parts instead.
        for k, v in sorted(request.form.items(multi=True), key=lambda kv: (str(kv[0]), str(kv[1]))):
            h.update(f"{k}={v}".encode("utf-8", "surrogatepass") + b"\x00")
        for k, f in sorted(request.files.items(multi=True), key=lambda kv: (str(kv[0]), str(kv[1].filename))):
            h.update(f"{k}:{f.filename}:".encode("utf-8", "surrogatepass"))
            h.update(hashlib.sha256(f.stream.read()).digest())
            f.stream.seek(0)
    else:
        h.update(request.get_data(cache=True))
    return h.hexdigest()


def before_post():
    """Replay, refuse, or claim the key for this request."""
    key = request.headers.get(HEADER)
    if request.method != "POST" or key is None:
        return None
    actor = g.get("api_actor")
    if actor is None or actor.id is None:
        return None
    if not KEY_RE.match(key):
        raise BadBody(text("Idempotency-Key must be 1-200 visible ASCII characters.", "Idempotency-Key 须为 1-200 个可见 ASCII 字符。"))
    engine = current_app.extensions["crmkit"].engine
    digest = _request_hash()
    now = _now()
    t = idempotency_key
    with engine.begin() as conn:
        conn.execute(delete(t).where(t.c.expires_at < now))  # indexed; usually nothing
        row = conn.execute(select(t).where(t.c.user_id == actor.id, t.c.key == key)).mappings().first()
        if row is not None and row["status_code"] is None and row["created_at"] < now - ABANDONED:
            conn.execute(delete(t).where(t.c.id == row["id"]))
            row = None
    if row is not None:
        if row["request_hash"] != digest:
            raise IdempotencyConflict(text("This Idempotency-Key was already used for a different request; use a new key.",
                                           "该 Idempotency-Key 已用于另一个不同的请求，请换一个新的键。"))
        if row["status_code"] is None:
            raise IdempotencyConflict(text("A request with this Idempotency-Key is still in progress; retry shortly.",
                                           "使用该 Idempotency-Key 的请求仍在处理中，请稍后重试。"))
        stored = json.loads(row["response"])
        resp = Response(stored["body"], status=row["status_code"])
        for k, v in stored["headers"].items():
            resp.headers[k] = v
        resp.headers[REPLAYED] = "true"
        return resp
    try:
        with engine.begin() as conn:
            g.idempotency_id = inserted_id(conn.execute(t.insert().values(user_id=actor.id, key=key, request_hash=digest, created_at=now,
                                                                          expires_at=now + TTL)))
    except IntegrityError:
        raise IdempotencyConflict(text("A request with this Idempotency-Key is still in progress; retry shortly.",
                                       "使用该 Idempotency-Key 的请求仍在处理中，请稍后重试。")) from None
    return None


def after_post(response):
    claim = g.pop("idempotency_id", None)
    if claim is None:
        return response
    engine = current_app.extensions["crmkit"].engine
    t = idempotency_key
    with engine.begin() as conn:
        if response.status_code >= 500:
            conn.execute(delete(t).where(t.c.id == claim))
        else:
            body = response.get_data(as_text=True)
            headers = {k: response.headers[k] for k in KEPT_HEADERS if k in response.headers}
            conn.execute(t.update().where(t.c.id == claim).values(status_code=response.status_code,
                                                                   response=json.dumps({"body": body, "headers": headers})))
    return response


def teardown_post(_exc=None):
    """An exception that escaped every handler: free the claim so the request can be retried."""
    claim = g.pop("idempotency_id", None)
    if claim is not None:
        with current_app.extensions["crmkit"].engine.begin() as conn:
            conn.execute(delete(idempotency_key).where(idempotency_key.c.id == claim))


def install_idempotency(bp: Blueprint) -> None:
    """Register the hooks on the API blueprint (after its authentication hook, which sets the actor)."""
    bp.before_request(before_post)
    bp.after_request(after_post)
    bp.teardown_request(teardown_post)
