"""Reading JSON request bodies with errors a client can act on."""
from __future__ import annotations

import json
import math
from typing import Any, Literal, overload

from flask import request

from ..errors import ValidationFailed
from .errors import BadBody, UnsupportedMediaType

MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 20
INT64 = (-(2**63), 2**63 - 1)


@overload
def json_object(*, optional: Literal[False] = False) -> dict: ...
@overload
def json_object(*, optional: bool) -> dict | None: ...
def json_object(*, optional: bool = False) -> dict | None:
    """The body as a JSON object; ``optional`` allows an empty body (→ None)."""
    raw = request.get_data(cache=True)  # raises 413 beyond request.max_content_length
    if not raw.strip():
        if optional:
            return None
        raise BadBody("The request body is empty; send a JSON object with Content-Type: application/json.")
    mimetype = request.mimetype or ""
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(f"The body must be JSON (Content-Type: application/json), not {mimetype}.")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise BadBody("The request body is not UTF-8 text.") from None
    except json.JSONDecodeError as exc:
        raise BadBody(f"The request body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
    except RecursionError:
        raise BadBody("The request body is nested too deeply.") from None
    except ValueError as exc:
        raise BadBody(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadBody(f"The request body must be a JSON object ({{\"field\": value, ...}}), not {type(data).__name__}.")
    problems = _check_values(data, "", 0)
    if problems:
        raise ValidationFailed(problems)
    return data


def _no_constants(name: str):
    raise ValueError(f"{name} is not a valid JSON number")


def _check_values(value: Any, path: str, depth: int) -> dict[str, list[str]]:
    """Values no database column can hold: NUL characters, numbers beyond 64 bits, deep nesting."""
    if depth > MAX_DEPTH:
        return {path or "_schema": ["The value is nested too deeply."]}
    if isinstance(value, str):
        return {path or "_schema": ["Text cannot contain the NUL character (\\u0000)."]} if "\x00" in value else {}
    if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
        return {path or "_schema": ["Number is too large."]}
    if isinstance(value, float) and not math.isfinite(value):
        return {path or "_schema": ["Number is too large."]}
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    out: dict[str, list[str]] = {}
    for k, v in items:
        if isinstance(k, str) and "\x00" in k:
            out[path or "_schema"] = ["Names cannot contain the NUL character (\\u0000)."]
            continue
        out.update(_check_values(v, f"{path}.{k}" if path else str(k), depth + 1))
    return out
