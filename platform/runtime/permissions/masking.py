"""Mask styles for sensitive fields: a field definition's ``mask`` property, or a role's ``masked`` field rule.

Masking happens on the server before a value leaves the query service, so every output
(pages, API, export, history, pickers) shows the same masked text. A masked value is a
``MaskedText``: once masked, a date or a number is no longer one, and the places that format
values (``FieldType.display_text`` / ``json_value``) show it as the text it is.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

MASK_STYLES = ("id_number", "mobile", "name", "email")
# Styles a role's ``masked`` rule uses for a field without a ``mask`` of its own (never offered in definitions).
EVERY_CHARACTER = "every_character"  # text and dates: each character becomes *, so the shape stays
FIXED = "fixed"  # numbers, yes/no, choices and lists: always ****, since the length would tell a yes from a no
FIXED_TEXT = "****"

# A role mask by field type, when the field has no ``mask`` of its own.
TYPE_STYLES = {"phone": "mobile", "email": "email", "id_number": "id_number"}
FIXED_TYPES = frozenset({"integer", "decimal", "money", "percent", "rollup", "boolean", "single_select", "multi_select", "tags"})
FIXED_RESULTS = frozenset({"number", "integer", "boolean"})  # formula and lookup results
# Values that are references or structures: no masked text can stand in for them (a link's label is looked up by
# its id, a child table holds rows), so a role's ``masked`` rule on such a field reads as ``hidden``.
NOT_ROLE_MASKABLE = frozenset({"link", "user", "org_unit", "child_table", "attachment"})


class MaskedText(str):
    """Text that replaced a value by masking; shown as it is, whatever the field's type."""

    __slots__ = ()


def _stars(value: str, keep_start: int, keep_end: int) -> str:
    if len(value) <= keep_start + keep_end:
        # Too short to keep both ends: keep at most the first character.
        return value[:1] + "*" * max(len(value) - 1, 1)
    return value[:keep_start] + "*" * (len(value) - keep_start - keep_end) + value[len(value) - keep_end:]


def _masked(style: str, text: str) -> str:
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
    if style == FIXED:
        return FIXED_TEXT
    return "*" * len(text)


def mask_value(style: str, value: Any) -> Any:
    """``value`` with its middle hidden: 110101********1234, 138****5678, 张*, z***@example.com; ********** for a date."""
    if value is None or value == "" or value == []:
        return value
    text = value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else str(value)
    return MaskedText(_masked(style, text))


def mask_style(field) -> str | None:
    """The field's own mask style, or None when it is not masked for every reader."""
    style = field.opt("mask") if hasattr(field, "opt") else None
    return style if style in MASK_STYLES else None


def role_mask_style(field) -> str | None:
    """The style a role's ``masked`` rule shows ``field`` in: the field's own mask, else one chosen by its type;
    None when the field's values cannot be masked (references and structures, see ``NOT_ROLE_MASKABLE``)."""
    if field.type in NOT_ROLE_MASKABLE:
        return None
    if own := mask_style(field):
        return own
    if field.type in TYPE_STYLES:
        return TYPE_STYLES[field.type]
    if field.type in FIXED_TYPES or (field.type in ("formula", "lookup") and field.opt("result") in FIXED_RESULTS):
        return FIXED
    return EVERY_CHARACTER
