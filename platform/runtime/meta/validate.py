"""JSON Schema (draft 2020-12) validation of definitions, with file + JSON pointer errors."""
from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections import OrderedDict
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from ..fields import FieldTypeRegistry

KINDS = ("app", "entity", "form", "view", "workflow", "report", "dashboard", "automation")
BASE_URI = "https://crmkit.dev/schemas/"


def _load(name: str) -> dict:
    return json.loads(resources.files(__package__).joinpath("schemas", f"{name}.json").read_text("utf-8"))


@lru_cache(maxsize=None)
def _raw_schemas() -> dict[str, dict]:
    return {n: _load(n) for n in ("common", *KINDS)}


def meta_schema(kind: str, field_types: FieldTypeRegistry) -> dict:
    """The meta-schema for a kind. The entity schema gets one if/then per registered field type."""
    schema = copy.deepcopy(_raw_schemas()[kind])
    if kind == "entity":
        field = schema["$defs"]["field"]
        common = sorted(field["properties"])
        field["properties"]["type"] = {"enum": field_types.names()}
        # Each type allows the common keys plus its own. ``propertyNames`` (rather than
        # ``unevaluatedProperties``) reports an unknown key once, and says nothing extra
        # when a known key merely has a bad value or the type itself is unknown.
        field["allOf"] = [
            {
                "if": {"properties": {"type": {"const": t.name}}, "required": ["type"]},
                "then": {
                    "properties": dict(t.config_properties), "required": list(t.config_required),
                    "propertyNames": {"enum": common + sorted(t.config_properties)},
                },
            }
            for t in field_types.all()
        ]
    return schema


def document_digest(document: Any) -> str | None:
    """A hash of the document's JSON text (what is stored, and what every other worker reads back);
    None for something that is not JSON (it is then validated every time)."""
    try:
        text_ = json.dumps(document, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text_.encode("ascii")).hexdigest()


# Remembered schema problems, shared by every validator in the process: (meta-schema digest, kind, document digest) →
# problems. The result is a pure function of the key, so apps built one after another (a test run, a worker that
# rebuilds its app) validate each document once.
_KNOWN: OrderedDict[tuple[str, str, str], tuple[tuple[str, str], ...]] = OrderedDict()
_KNOWN_LOCK = threading.Lock()
KNOWN_SIZE = 4096


class DefinitionValidator:
    """Validates raw definitions of every kind; built once per field type registry.

    A document's schema problems depend only on the meta-schemas (which depend on the registered field types), its
    kind and its content, so they are remembered by those (``_KNOWN``): a publish validates each changed document
    once, and a worker reloading after a stamp change re-validates only the documents whose content changed. Changed
    content has a new hash, so a remembered result can never stand in for a different document."""

    def __init__(self, field_types: FieldTypeRegistry):
        raw = _raw_schemas()
        entity_schema = meta_schema("entity", field_types)
        registry = Registry().with_resources(
            (BASE_URI + f"{n}.json", Resource.from_contents(raw[n] if n != "entity" else entity_schema))
            for n in raw
        )
        self._validators = {
            kind: Draft202012Validator(entity_schema if kind == "entity" else meta_schema(kind, field_types), registry=registry,
                                       format_checker=FormatChecker())
            for kind in KINDS
        }
        self._schemas = document_digest(entity_schema) or ""  # the other kinds' meta-schemas are fixed

    def problems(self, kind: str, document: Any, filename: str) -> list[tuple[str, str, str]]:
        """Every schema problem as (file, JSON pointer, message), in document order."""
        digest = document_digest(document)
        if digest is None:
            return [(filename, at, message) for at, message in self.schema_problems(kind, document)]
        key = (self._schemas, kind, digest)
        with _KNOWN_LOCK:
            found = _KNOWN.get(key)
            if found is not None:
                _KNOWN.move_to_end(key)
        if found is None:
            found = tuple(self.schema_problems(kind, document))
            with _KNOWN_LOCK:
                _KNOWN[key] = found
                while len(_KNOWN) > KNOWN_SIZE:
                    _KNOWN.popitem(last=False)
        return [(filename, at, message) for at, message in found]

    def schema_problems(self, kind: str, document: Any) -> list[tuple[str, str]]:
        """Run the meta-schema: (JSON pointer, message) for each problem. Uncached; see ``problems``."""
        validator = self._validators[kind]
        out = []
        for err in sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]):
            path = list(err.absolute_path)
            message = _message(err)
            if "propertyNames" in err.relative_schema_path:
                owner = _at(document, path)
                ftype = owner.get("type") if isinstance(owner, dict) else None
                message = f"{err.instance!r} is not a property of a {ftype} field; allowed: {', '.join(err.validator_value)}"
                path.append(err.instance)  # point at the offending key, not at its object
            out.append((pointer(path), message))
        return out


def pointer(path) -> str:
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "/" + "/".join(parts) if parts else ""


def _at(document: Any, path: list) -> Any:
    for part in path:
        document = document[part]
    return document


def _message(err) -> str:
    if err.validator == "enum" and err.absolute_path and err.absolute_path[-1] == "type":
        return f"unknown field type {err.instance!r}; known types: {', '.join(err.validator_value)}"
    if err.validator == "not" and isinstance(err.instance, str):
        return f"{err.instance!r} is reserved; choose another name"
    if err.validator == "pattern":
        return f"{err.instance!r} does not have the required form (pattern {err.validator_value})"
    if err.validator == "oneOf" and isinstance(err.instance, dict) and {"field", "op"} - set(err.instance):
        return "a filter is {\"and\": [...]}, {\"or\": [...]} or {\"field\", \"op\", \"value\"}"
    return err.message
