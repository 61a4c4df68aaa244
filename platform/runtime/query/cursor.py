"""Opaque keyset cursors: the sort signature plus the last row's sort values."""
from __future__ import annotations

import base64
import json
from typing import Any

from ..errors import BadQuery


def encode_cursor(sort_sig: str, values: list[Any], direction: str = "after") -> str:
    raw = json.dumps({"s": sort_sig, "v": values, "d": direction}, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort_sig: str) -> tuple[list[Any], str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        values, direction, sig = data["v"], data.get("d", "after"), data["s"]
    except Exception:
        raise BadQuery("The page cursor is not valid; start again from the first page.") from None
    if sig != sort_sig or direction not in ("after", "before") or not isinstance(values, list):
        raise BadQuery("The page cursor belongs to a different sort order; start again from the first page.")
    return values, direction
