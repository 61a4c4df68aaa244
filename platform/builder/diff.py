"""A readable diff of two definitions: list items are matched by their id or name, not by position,
so adding a field reads as one added field instead of every later field changing."""
from __future__ import annotations

from typing import Any

IDENTITY_KEYS = ("id", "name", "value", "field", "entity")


def _identity(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for k in IDENTITY_KEYS:
            if isinstance(item.get(k), str):
                return f"{item[k]}"
    return None


def _shown(item: Any, ident: str) -> str:
    """How a path names a list item: its name when it has one (ids match items, names read better)."""
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return item["name"]
    return ident


def readable_diff(old: Any, new: Any, path: str = "") -> list[dict]:
    """[{path, op: added|removed|changed|moved, old, new}] between two JSON values."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in list(old) + [k for k in new if k not in old]:
            if k not in new:
                out.append({"path": f"{path}/{k}", "op": "removed", "old": old[k], "new": None})
            elif k not in old:
                out.append({"path": f"{path}/{k}", "op": "added", "old": None, "new": new[k]})
            else:
                out += readable_diff(old[k], new[k], f"{path}/{k}")
        return out
    if isinstance(old, list) and isinstance(new, list):
        old_ids, new_ids = [_identity(i) for i in old], [_identity(i) for i in new]
        if None not in old_ids and None not in new_ids and len(set(old_ids)) == len(old_ids) and len(set(new_ids)) == len(new_ids):
            out = []
            old_by, new_by = dict(zip(old_ids, old)), dict(zip(new_ids, new))
            for i in old_ids:
                if i not in new_by:
                    out.append({"path": f"{path}/{_shown(old_by[i], i)}", "op": "removed", "old": old_by[i], "new": None})
                else:
                    out += readable_diff(old_by[i], new_by[i], f"{path}/{_shown(new_by[i], i)}")
            for i in new_ids:
                if i not in old_by:
                    out.append({"path": f"{path}/{_shown(new_by[i], i)}", "op": "added", "old": None, "new": new_by[i]})
            common_old = [i for i in old_ids if i in new_by]
            common_new = [i for i in new_ids if i in old_by]
            if common_old != common_new:
                names = {i: _shown(new_by[i], i) for i in common_new}
                out.append({"path": path or "/", "op": "moved", "old": [names[i] for i in common_old], "new": [names[i] for i in common_new]})
            return out
    if old == new:
        return []
    return [{"path": path or "/", "op": "changed", "old": old, "new": new}]
