"""Input validation: a marshmallow schema generated from the entity, plus required/read-only rules."""
from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError

from ..errors import ValidationFailed
from ..meta.catalog import Catalog
from ..meta.model import EntityDef

SYSTEM_INPUT_KEYS = {"id", "created_at", "updated_at", "created_by", "updated_by", "owner_id", "org_unit_id",
                     "row_version", "deleted_at", "deleted_by", "workflow_state", "parent_id", "sort_order", "_labels", "version"}
REQUIRED = "This field is required."
MAX_TEXT_INPUT = 1_000_000


class SchemaCache:
    """Generated schemas per (catalog version, entity)."""

    def __init__(self):
        self._cache: dict[tuple[int, str], Schema] = {}

    def schema(self, catalog: Catalog, entity: EntityDef) -> Schema:
        key = (catalog.version, entity.key)
        s = self._cache.get(key)
        if s is None:
            fields = {f.name: catalog.type_of(f).marshmallow_field(f) for f in entity.fields}
            s = Schema.from_dict(fields, name=f"{entity.key}Input")(unknown=RAISE)
            if len(self._cache) > 512:
                self._cache.clear()
            self._cache[key] = s
        return s


def validate_input(catalog: Catalog, entity: EntityDef, data: Any, schemas: SchemaCache, *, creating: bool,
                   writable: tuple[str, ...], current: dict | None = None) -> dict:
    """Return cleaned values for the fields present in ``data``; raise ValidationFailed listing every problem."""
    if not isinstance(data, dict):
        raise ValidationFailed({"_schema": ["Send an object of field names to values."]})
    payload = {k: v for k, v in data.items() if k not in SYSTEM_INPUT_KEYS}
    errors: dict[str, list] = {}
    for k, v in payload.items():
        if isinstance(v, str) and len(v) > MAX_TEXT_INPUT:
            errors[k] = [f"Value is too long (over {MAX_TEXT_INPUT} characters)."]
    try:
        cleaned = schemas.schema(catalog, entity).load({k: v for k, v in payload.items() if k not in errors}, partial=True)
    except ValidationError as exc:
        for k, msgs in exc.normalized_messages().items():
            errors.setdefault(k, []).extend(msgs if isinstance(msgs, list) else [msgs])
        cleaned = {}
    fields = entity.field_map
    for name in list(payload):
        f = fields.get(name)
        if f is None:
            continue
        if f.read_only or name not in writable:
            same = current is not None and name in cleaned and cleaned.get(name) == current.get(name)
            if not same and payload[name] not in (None, "", []):
                errors.setdefault(name, []).append("This field is read-only." if f.read_only else "You may not change this field.")
            cleaned.pop(name, None)
    for f in entity.fields:
        if not f.required or f.read_only or f.type == "sequence":
            continue
        empty = lambda v: v is None or v == [] or v == ""
        if creating and empty(cleaned.get(f.name)) and f.default is None:
            errors.setdefault(f.name, []).append(REQUIRED)
        elif not creating and f.name in cleaned and empty(cleaned[f.name]):
            errors.setdefault(f.name, []).append(REQUIRED)
    if errors:
        raise ValidationFailed({k: _flatten(v) for k, v in errors.items()})
    return cleaned


def _flatten(msgs) -> list:
    out = []
    for m in msgs:
        if isinstance(m, dict):
            for sub, sm in m.items():
                out.extend(f"{sub}: {x}" for x in (sm if isinstance(sm, list) else [sm]))
        else:
            out.append(str(m))
    return out
