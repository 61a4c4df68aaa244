"""Input validation: a marshmallow schema generated from the entity, plus required/read-only rules."""
from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, missing

from ..errors import ValidationFailed
from ..fields import COMPUTED_TYPES
from ..fields.base import contains_nul, flatten_messages
from ..fields.messages import InputSchema
from ..i18n_text import text
from ..meta.catalog import Catalog
from ..meta.model import EntityDef

SYSTEM_INPUT_KEYS = {"id", "created_at", "updated_at", "created_by", "updated_by", "owner_id", "org_unit_id",
                     "row_version", "deleted_at", "deleted_by", "workflow_state", "parent_id", "sort_order", "_labels", "version"}
REQUIRED = text("This field is required.", "此项必填。")
MAX_TEXT_INPUT = 1_000_000
ASSIGNED = text("This number is assigned automatically; leave it empty.", "该编号由系统自动生成，请留空。")
READ_ONLY = text("This field is read-only.", "此项为只读，不能修改。")
COMPUTED = text("This field is computed; it cannot be set.", "此项由系统计算，不能填写。")
NOT_WRITABLE = text("You may not change this field.", "你没有修改此项的权限。")


class SchemaCache:
    """Generated schemas per (catalog version, entity)."""

    def __init__(self):
        self._cache: dict[tuple[int, str], Schema] = {}

    def schema(self, catalog: Catalog, entity: EntityDef) -> Schema:
        key = (catalog.version, entity.key)
        s = self._cache.get(key)
        if s is None:
            fields = {f.name: catalog.type_of(f).marshmallow_field(f) for f in entity.fields}
            s = InputSchema.from_dict(fields, name=f"{entity.key}Input")(unknown=RAISE)
            if len(self._cache) > 512:
                self._cache.clear()
            self._cache[key] = s
        return s


def load_partial(schema: Schema, data: dict) -> tuple[dict, dict]:
    """``schema.load(data, partial=True)`` for the generated input schemas (no hooks, no schema-level validators,
    unknown keys refused), returning ``(valid values, errors by field)`` instead of raising.

    The same field calls in the same order as marshmallow's loader, without its per-field closures and error store:
    that machinery cost about as much as the fields' own parsing, once per field of every record of an import."""
    out: dict = {}
    errors: dict = {}
    for name, field in schema.load_fields.items():
        raw = data.get(name, missing)
        if raw is missing:
            continue
        try:
            value = field.deserialize(raw, name, data, partial=True)
        except ValidationError as exc:
            errors[name] = exc.messages
            value = exc.valid_data or missing
        if value is not missing:
            out[name] = value
    unknown = set(data) - schema.load_fields.keys()
    for name in sorted(unknown):
        errors[name] = [schema.error_messages["unknown"]]
    return out, errors


def validate_input(catalog: Catalog, entity: EntityDef, data: Any, schemas: SchemaCache, *, creating: bool,
                   writable: tuple[str, ...], current: dict | None = None) -> dict:
    """Return cleaned values for the fields present in ``data``; raise ValidationFailed listing every problem."""
    if not isinstance(data, dict):
        raise ValidationFailed({"_schema": [text("Send an object of field names to values.", "请提交由字段名和值组成的对象。")]})
    payload = {k: v for k, v in data.items() if k not in SYSTEM_INPUT_KEYS}
    errors: dict[str, list] = {}
    for k, v in payload.items():
        if isinstance(v, str) and len(v) > MAX_TEXT_INPUT:
            errors[k] = [text("Value is too long (over {n} characters).", "内容过长（超过 {n} 个字符），请删减。", n=MAX_TEXT_INPUT)]
        elif contains_nul(v):
            errors[k] = [text("Text cannot contain the NUL character (\\u0000); remove it and try again.",
                              "文本中不能包含 NUL 字符（\\u0000），请删除后重试。")]
    # Keeps the fields that were fine, so a bad value is not also reported as "required".
    cleaned, failed = load_partial(schemas.schema(catalog, entity), {k: v for k, v in payload.items() if k not in errors})
    for k, msgs in failed.items():
        errors.setdefault(k, []).extend(msgs if isinstance(msgs, list) else [msgs])
    fields = entity.field_map
    for name in list(payload):
        f = fields.get(name)
        if f is None:
            continue
        assigned = f.type == "sequence"  # numbered by the record service, like a read-only field
        if f.read_only or assigned or name not in writable:
            same = current is not None and name in cleaned and cleaned.get(name) == current.get(name)
            if not same and payload[name] not in (None, "", []):
                if f.type in COMPUTED_TYPES:
                    msg = COMPUTED
                elif f.read_only or assigned:
                    msg = ASSIGNED if assigned else READ_ONLY
                else:
                    msg = NOT_WRITABLE
                errors.setdefault(name, []).append(msg)
            cleaned.pop(name, None)
    for f in entity.fields:
        if not f.required or f.read_only or f.type == "sequence" or f.name in errors or f.visible_if:
            continue  # a field with visible_if is required only while shown: records/rules.py checks it
        empty = lambda v: v is None or v == [] or v == ""
        if creating and empty(cleaned.get(f.name)) and f.default is None:
            errors.setdefault(f.name, []).append(REQUIRED)
        elif not creating and f.name in cleaned and empty(cleaned[f.name]):
            errors.setdefault(f.name, []).append(REQUIRED)
    if errors:
        raise ValidationFailed({k: _flatten(v) for k, v in errors.items()})
    return cleaned


def _flatten(msgs) -> list:
    return flatten_messages(msgs)
