"""Opaque keyset cursors: the sort signature plus the last row's sort values."""
from __future__ import annotations

import base64
import json
from typing import Any

from ..errors import BadQuery
from ..i18n_text import text

BAD_CURSOR = text("The page cursor is not valid; start again from the first page.", "分页位置无效，请从第一页重新开始。")


def encode_cursor(sort_sig: str, values: list[Any], direction: str = "after") -> str:
    raw = json.dumps({"s": sort_sig, "v": values, "d": direction}, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort_sig: str) -> tuple[list[Any], str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        values, direction, sig = data["v"], data.get("d", "after"), data["s"]
    except Exception:
        raise BadQuery(BAD_CURSOR) from None
    if sig != sort_sig or direction not in ("after", "before") or not isinstance(values, list):
        raise BadQuery(text("The page cursor belongs to a different sort order; start again from the first page.",
                            "分页位置属于另一种排序方式，请从第一页重新开始。"))
    return values, direction
