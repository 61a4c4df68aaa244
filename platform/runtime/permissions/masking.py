"""Mask styles for sensitive fields (a field definition's ``mask`` property).

Masking happens on the server before a value leaves the query service, so every output
(pages, API, export, history, pickers) shows the same masked text.
"""
from __future__ import annotations

from typing import Any

MASK_STYLES = ("id_number", "mobile", "name", "email")


def _stars(value: str, keep_start: int, keep_end: int) -> str:
    if len(value) <= keep_start + keep_end:
        # Too short to keep both ends: keep at most the first character.
        return value[:1] + "*" * max(len(value) - 1, 1)
    return value[:keep_start] + "*" * (len(value) - keep_start - keep_end) + value[len(value) - keep_end:]


def mask_value(style: str, value: Any) -> Any:
    """``value`` with its middle hidden: 110101********1234, 138****5678, 张*, z***@example.com."""
    if value is None or value == "":
        return value
    text = str(value)
    if style == "id_number":
        return _stars(text, 6, 4)
    if style == "mobile":
        return _stars(text, 3, 4)
    if style == "name":
        return text[:1] + "*" * max(len(text) - 1, 1)
    if style == "email":
        local, at, domain = text.partition("@")
        if not at:
            return _stars(text, 1, 0)
        return (local[:1] or "*") + "***@" + domain
    return "*" * len(text)


def mask_style(field) -> str | None:
    """The field's mask style, or None when it is not masked."""
    style = field.opt("mask") if hasattr(field, "opt") else None
    return style if style in MASK_STYLES else None
