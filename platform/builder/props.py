"""The property editor, driven by JSON Schema rather than by hand-written forms per field type.

Each field's editable properties are the common field properties of the entity meta-schema plus the
type's own ``config_properties``. Every property schema maps to one input kind; anything the editor
has no special input for (a new kind of property another module declares) gets a JSON box, and a
plain string property (an expression, say) gets a text box. So new field types and properties
appear in the builder as soon as their schema exists.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from crmkit.runtime.fields import FieldType, FieldTypeRegistry
from crmkit.runtime.i18n_text import text
from crmkit.runtime.meta.validate import meta_schema

# Properties the editor shows elsewhere (identity, type) or never (the stable id).
FIELD_FIXED = ("id", "name", "type", "retired")
ENTITY_KEY_PATTERN = "^[a-z][a-z0-9_]*\\.[a-z][a-z0-9_]*$"


@dataclass
class PropSpec:
    name: str
    kind: str  # label, boolean, integer, number, enum, string, text, date, entity, options, string_list, json
    schema: dict
    required: bool = False
    choices: list = field(default_factory=list)  # (value, label) for enum / entity
    description: str = ""

    @property
    def input_name(self) -> str:
        return f"p.{self.name}"


def _is_label(schema: dict) -> bool:
    ref = schema.get("$ref", "")
    return ref.endswith("/label")


def kind_of(schema: dict) -> str:
    if _is_label(schema):
        return "label"
    if "enum" in schema:
        return "enum"
    t = schema.get("type")
    if t == "boolean":
        return "boolean"
    if t == "integer":
        return "integer"
    if t == "number":
        return "number"
    if t == "string":
        if schema.get("pattern") == ENTITY_KEY_PATTERN:
            return "entity"
        if schema.get("format") == "date":
            return "date"
        return "string"
    if t == "array":
        items = schema.get("items", {})
        if items.get("type") == "object" and set(items.get("properties", {})) >= {"value", "label"}:
            return "options"
        if items.get("type") == "string":
            return "string_list"
    return "json"


def field_prop_specs(field_types: FieldTypeRegistry, ftype: FieldType, entity_keys: list[tuple[str, str]] = ()) -> list[PropSpec]:
    """Common field properties first (label, help, …), then the type's own, in declared order."""
    common = meta_schema("entity", field_types)["$defs"]["field"]["properties"]
    specs = []
    for name, schema in common.items():
        if name in FIELD_FIXED:
            continue
        specs.append(_spec(name, schema, required=name == "label"))
    for name, schema in ftype.config_properties.items():
        specs.append(_spec(name, schema, required=name in ftype.config_required, entity_keys=entity_keys))
    return specs


def _spec(name: str, schema: dict, *, required: bool = False, entity_keys=()) -> PropSpec:
    if schema is True:  # "default": any JSON value
        schema = {}
        kind = "string"
    else:
        kind = kind_of(schema)
    choices = []
    if kind == "enum":
        choices = [(v, str(v)) for v in schema["enum"]]
    elif kind == "entity":
        choices = list(entity_keys)
    return PropSpec(name, kind, schema, required, choices, schema.get("description", "") if isinstance(schema, dict) else "")


def form_value(spec: PropSpec, value: Any) -> Any:
    """What the input shows for a stored value."""
    if value is None:
        return {"zh": "", "en": ""} if spec.kind == "label" else ([] if spec.kind == "options" else "")
    if spec.kind == "label":
        return {"zh": value.get("zh", ""), "en": value.get("en", "")}
    if spec.kind == "string_list":
        return ", ".join(value)
    if spec.kind == "options":
        return [{"value": o.get("value", ""), "zh": o.get("label", {}).get("zh", ""), "en": o.get("label", {}).get("en", ""),
                 "color": o.get("color", "")} for o in value]
    if spec.kind == "json":
        return json.dumps(value, ensure_ascii=False, indent=1)
    if spec.kind == "boolean":
        return bool(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


class PropertyError(ValueError):
    """Input that cannot become a property value; ``errors`` maps property name → message."""

    def __init__(self, errors: dict):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def parse_props(specs: list[PropSpec], form) -> tuple[dict, list[str]]:
    """Property values from submitted form data, and the names that were cleared (to remove).

    Raises ``PropertyError`` with a message per property for input of the wrong shape; the
    meta-schema then checks the values themselves on the whole definition.
    """
    values, cleared, errors = {}, [], {}
    for spec in specs:
        key = spec.input_name
        try:
            value = _parse(spec, form, key)
        except ValueError as exc:
            errors[spec.name] = exc.args[0]
            continue
        if value is None:
            cleared.append(spec.name)
        else:
            values[spec.name] = value
    if errors:
        raise PropertyError(errors)
    return values, cleared


def _parse(spec: PropSpec, form, key: str) -> Any:
    kind = spec.kind
    if kind == "label":
        zh, en = form.get(f"{key}.zh", "").strip(), form.get(f"{key}.en", "").strip()
        if not zh and not en:
            return None
        return {"zh": zh or en, "en": en or zh}
    if kind == "boolean":
        return True if form.get(key) in ("on", "true", "1") else None
    if kind == "options":
        return _parse_options(form, key)
    raw = (form.get(key) or "").strip()
    if raw == "":
        return None
    if kind == "integer":
        if not re.fullmatch(r"-?\d+", raw):
            raise ValueError(text("Enter a whole number.", "请输入整数。"))
        return int(raw)
    if kind == "number":
        try:
            number = float(raw)
        except ValueError:
            raise ValueError(text("Enter a number.", "请输入数字。")) from None
        return int(number) if number.is_integer() else number
    if kind == "enum":
        for v in spec.schema["enum"]:
            if str(v) == raw:
                return v
        raise ValueError(text("Choose one of the listed values.", "请从列表中选择。"))
    if kind == "string_list":
        return [p.strip() for p in re.split(r"[,，、;；\n]", raw) if p.strip()]
    if kind == "json":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(text("Not valid JSON: {problem}.", "不是有效的 JSON：{problem}。", problem=exc.msg)) from None
    return raw


def _parse_options(form, key: str) -> list | None:
    values = form.getlist(f"{key}.value")
    zh, en, color = form.getlist(f"{key}.zh"), form.getlist(f"{key}.en"), form.getlist(f"{key}.color")
    out, seen = [], set()
    for i, v in enumerate(values):
        v = v.strip()
        z = (zh[i] if i < len(zh) else "").strip()
        e = (en[i] if i < len(en) else "").strip()
        c = (color[i] if i < len(color) else "").strip()
        if not v and not z and not e:
            continue
        if not v:
            v = re.sub(r"[^A-Za-z0-9_\-]+", "_", e.lower()).strip("_") or f"option_{i + 1}"
        if v in seen:
            raise ValueError(text("The option value '{value}' is used twice.", "选项值“{value}”重复。", value=v))
        seen.add(v)
        option = {"value": v, "label": {"zh": z or e or v, "en": e or z or v}}
        if c:
            option["color"] = c
        out.append(option)
    return out or None


# Entity properties the entity settings form has its own inputs for (or that are not edited here).
ENTITY_FIXED = ("id", "name", "label", "plural_label", "icon", "title_field", "search_fields", "is_child", "parent", "fields", "indexes")


def entity_extra_specs(field_types: FieldTypeRegistry) -> list[PropSpec]:
    """Entity-level properties added to the meta-schema later (e.g. cross-field ``validations``): generic inputs."""
    props = meta_schema("entity", field_types)["properties"]
    return [_spec(name, schema) for name, schema in props.items() if name not in ENTITY_FIXED]
