"""Query-string parameters of list endpoints → arguments of ``QueryService.list``.

Every problem is a BadQuery naming the parameter; values are passed on as data and the
query service checks field names against the entity's metadata.
"""
from __future__ import annotations

import json
import math
from typing import Any

from werkzeug.datastructures import MultiDict

from ..errors import BadQuery
from ..query.service import MAX_PAGE
from .body import INT64

LIST_PARAMS = ("filter", "sort", "search", "fields", "cursor", "limit", "count", "deleted")
COUNT_MODES = ("capped", "exact", "none")
DEFAULT_LIMIT = 25
MAX_SORT_KEYS = 3
MAX_PARAM_CHARS = 10_000


def list_arguments(args: MultiDict) -> dict[str, Any]:
    """Keyword arguments for ``QueryService.list`` from a request's query string."""
    check_known(args, LIST_PARAMS)
    out: dict[str, Any] = {"limit": DEFAULT_LIMIT, "count": "capped", "deleted": False}
    if (raw := single(args, "filter")) is not None:
        out["filter"] = filter_tree(raw)
    if (raw := single(args, "sort")) is not None:
        out["sort"] = name_list(raw, "sort")
        if len(out["sort"]) > MAX_SORT_KEYS:
            raise BadQuery(f"Sort by at most {MAX_SORT_KEYS} fields.")
    if (raw := single(args, "search")) is not None:
        out["search"] = raw
    if (raw := single(args, "fields")) is not None:
        out["fields"] = name_list(raw, "fields")
    if (raw := single(args, "cursor")) is not None:
        out["cursor"] = raw or None
    if (raw := single(args, "limit")) is not None:
        out["limit"] = bounded_int(raw, "limit", 1, MAX_PAGE)
    if (raw := single(args, "count")) is not None:
        if raw not in COUNT_MODES:
            raise BadQuery(f"count must be one of {', '.join(COUNT_MODES)} (got '{raw[:40]}').")
        out["count"] = raw
    out["deleted"] = flag(args, "deleted")
    return out


def check_known(args: MultiDict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise BadQuery(f"Unknown query parameter{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)[:200]}. "
                       f"Allowed: {', '.join(allowed) or 'none'}.")


def single(args: MultiDict, name: str) -> str | None:
    values = args.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadQuery(f"Give '{name}' once; it was given {len(values)} times.")
    value = values[0]
    if len(value) > MAX_PARAM_CHARS:
        raise BadQuery(f"'{name}' is longer than {MAX_PARAM_CHARS} characters.")
    if "\x00" in value:
        raise BadQuery(f"'{name}' contains the NUL character.")
    return value


def flag(args: MultiDict, name: str) -> bool:
    raw = single(args, name)
    if raw is None or raw.lower() in ("false", "0", ""):
        return False
    if raw.lower() in ("true", "1"):
        return True
    raise BadQuery(f"'{name}' must be true or false (got '{raw[:40]}').")


def bounded_int(raw: str, name: str, lo: int, hi: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadQuery(f"'{name}' must be a whole number between {lo} and {hi} (got '{raw[:40]}').") from None
    if not lo <= value <= hi:
        raise BadQuery(f"'{name}' must be between {lo} and {hi} (got {value}).")
    return value


def name_list(raw: str, name: str) -> list[str]:
    names = [p.strip() for p in raw.split(",") if p.strip()]
    if not names:
        raise BadQuery(f"'{name}' needs at least one field name, separated by commas.")
    return names


def filter_tree(raw: str) -> Any:
    """The JSON filter tree; numbers must fit a 64-bit column and text must be free of NUL characters."""
    try:
        tree = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        detail = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc) or "too deeply nested"
        raise BadQuery(f"'filter' is not valid JSON ({detail}). Example: "
                       '{"and": [{"field": "status", "op": "eq", "value": "active"}]}') from None
    _check_values(tree)
    return tree


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a valid number")


def _check_values(node: Any, depth: int = 0) -> None:
    if depth > 12:
        raise BadQuery("The filter is nested too deeply.")
    if isinstance(node, bool) or node is None:
        return
    if isinstance(node, int) and not INT64[0] <= node <= INT64[1]:
        raise BadQuery(f"The number {str(node)[:30]} in the filter is too large.")
    if isinstance(node, float) and not math.isfinite(node):
        raise BadQuery("Numbers in the filter must be finite.")
    if isinstance(node, str) and "\x00" in node:
        raise BadQuery("Text in the filter cannot contain the NUL character (\\u0000).")
    if isinstance(node, dict):
        for v in node.values():
            _check_values(v, depth + 1)
    elif isinstance(node, list):
        for v in node:
            _check_values(v, depth + 1)
