"""Hashing for the audit chain.

Each entry's hash covers the previous entry's hash and the entry's fields. The changes payload is
covered through ``payload_hash``, so an erasure can redact a payload (and flag the row) while the
chain itself still verifies.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, Mapping

CHAINED_FIELDS = ("seq", "at", "actor_id", "category", "action", "entity", "record_id", "subject", "ip", "request_id")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def payload_hash(changes: Any) -> str:
    return hashlib.sha256(canonical_json(changes).encode("utf-8")).hexdigest()


def _at(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(prev_hash: str, entry: Mapping[Any, Any], payload_digest: str) -> str:
    """The hash of one entry given the previous one; ``entry`` needs the CHAINED_FIELDS."""
    fields = [entry[k] if k != "at" else _at(entry[k]) for k in CHAINED_FIELDS]
    material = canonical_json([prev_hash, fields, payload_digest])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()
