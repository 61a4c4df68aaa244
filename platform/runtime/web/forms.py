"""Record forms: submitted HTML form data ↔ record-service input.

Input names: a field is ``<name>``; a child-table cell is ``<table>-<row key>-<name>`` with
the row's id in ``<table>-<row key>-id`` and the row order in repeated ``<table>.row`` values.
A checkbox and a checkbox group are preceded by a hidden empty input, so "nothing ticked"
still reaches the server. Attachments keep existing files as ``<name>`` = ``id|file name``
and take new uploads from ``<name>__upload``.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from zoneinfo import ZoneInfo

from ..meta.catalog import Catalog
from ..meta.model import EntityDef, FieldDef, FormDef
from ..permissions.masking import MaskedText

# Fields a person types into (sequence numbers are assigned by the record service).
NOT_EDITABLE_TYPES = {"sequence"}


def editable(f: FieldDef, writable: tuple[str, ...]) -> bool:
    return not f.read_only and f.type not in NOT_EDITABLE_TYPES and f.name in writable


def form_field_names(form: FormDef) -> list[str]:
    return [ff.field for s in form.sections for ff in s.fields]


def new_row_key() -> str:
    return "n" + uuid.uuid4().hex[:8]


# --- record → form values ---------------------------------------------------------------

def to_form_value(catalog: Catalog, f: FieldDef, value: Any, timezone: str) -> Any:
    if f.type == "child_table":
        child = catalog.entities[f.opt("entity")]
        return [(f"r{r['id']}", {"id": str(r["id"]), **{cf.name: to_form_value(catalog, cf, r.get(cf.name), timezone) for cf in child.fields}})
                for r in (value or [])]
    if value is None:
        return [] if f.type in ("multi_select", "attachment") else ""
    if isinstance(value, MaskedText):  # text now: a masked yes/no is neither, a masked list no list
        return str(value)
    if f.type == "boolean":
        return "true" if value else ""
    if f.type == "multi_select":
        return list(value)
    if f.type == "tags":
        return ", ".join(value)
    if f.type == "attachment":
        return [(v["id"], v.get("name", v["id"])) for v in value if isinstance(v, dict)]
    if f.type == "datetime" and isinstance(value, dt.datetime):
        return value.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%dT%H:%M")
    if f.type == "date" and isinstance(value, dt.date):
        return value.isoformat()
    return str(catalog.type_of(f).to_json(f, value))


def record_form_values(catalog: Catalog, entity: EntityDef, record: dict, timezone: str) -> dict:
    return {f.name: to_form_value(catalog, f, record.get(f.name), timezone) for f in entity.fields}


def default_form_values(catalog: Catalog, entity: EntityDef, timezone: str) -> dict:
    out = {}
    for f in entity.fields:
        if f.default is not None and catalog.type_of(f).stored:
            try:
                out[f.name] = to_form_value(catalog, f, catalog.type_of(f)._deserialize(f, f.default), timezone)
            except ValueError:
                out[f.name] = ""
        else:
            out[f.name] = to_form_value(catalog, f, None, timezone)
    return out


# --- form data → record-service input ------------------------------------------------------

@dataclass
class Submission:
    payload: dict  # what RecordService.create/update receives
    values: dict  # what the form shows when it is rendered again
    child_keys: dict = field(default_factory=dict)  # child table → row keys in submitted order


def _parse_value(f: FieldDef, formdata, files, key: str, save_file: Callable) -> tuple[bool, Any, Any]:
    """(present, payload value, form value) of one input."""
    if f.type == "boolean":
        if key not in formdata:
            return False, None, ""
        on = "true" in formdata.getlist(key)
        return True, on, "true" if on else ""
    if f.type == "multi_select":
        if key not in formdata:
            return False, None, []
        chosen = [v for v in formdata.getlist(key) if v]
        return True, chosen, chosen
    if f.type == "attachment":
        uploads = [u for u in files.getlist(key + "__upload") if u and u.filename]
        if key not in formdata and not uploads:
            return False, None, []
        kept = []
        for v in formdata.getlist(key):
            if v:
                fid, _, name = v.partition("|")
                kept.append((fid, name or fid))
        for u in uploads:
            desc = save_file(u)
            kept.append((desc["id"], desc["name"]))
        return True, [fid for fid, _ in kept], kept
    if key not in formdata:
        return False, None, ""
    raw = formdata.get(key, "")
    # An empty input means "no value": send None, as the API would.
    return True, (raw if raw.strip() else None), raw


def parse_submission(catalog: Catalog, entity: EntityDef, form: FormDef, formdata, files, writable: tuple[str, ...],
                     child_writable: Callable[[EntityDef], tuple[str, ...]], save_file: Callable) -> Submission:
    """Only fields that are on the form and writable are sent; read-only ones never are."""
    sub = Submission(payload={}, values={})
    for name in form_field_names(form):
        f = entity.field_map.get(name)
        if f is None or not editable(f, writable):
            continue
        if f.type == "child_table":
            if f"{name}.present" not in formdata:
                continue
            child = catalog.entities[f.opt("entity")]
            cw = child_writable(child)
            rows, shown, keys = [], [], []
            for key in formdata.getlist(f"{name}.row"):
                key = "".join(ch for ch in key if ch.isalnum())[:20]
                if not key or key in keys:
                    continue
                keys.append(key)
                prefix = f"{name}-{key}-"
                row: dict = {}
                raw_id = formdata.get(prefix + "id", "").strip()
                shown_row: dict = {"id": raw_id}
                if raw_id:
                    row["id"] = int(raw_id) if raw_id.isdigit() else raw_id
                for cf in child.fields:
                    if not editable(cf, cw) or cf.type == "child_table":
                        continue
                    present, value, display = _parse_value(cf, formdata, files, prefix + cf.name, save_file)
                    shown_row[cf.name] = display
                    if present:
                        row[cf.name] = value
                rows.append(row)
                shown.append((key, shown_row))
            sub.payload[name] = rows
            sub.values[name] = shown
            sub.child_keys[name] = keys
            continue
        present, value, display = _parse_value(f, formdata, files, name, save_file)
        sub.values[name] = display
        if present:
            sub.payload[name] = value
    return sub


def split_errors(field_errors: dict, child_keys: dict) -> dict:
    """Service errors → errors by input name.

    ``items.2.qty`` (third submitted row) becomes the input name ``items-<key>-qty``.
    """
    by_input: dict[str, list[str]] = {}
    for key, msgs in field_errors.items():
        msgs = msgs if isinstance(msgs, list) else [str(msgs)]
        parts = str(key).split(".")
        if len(parts) >= 2 and parts[0] in child_keys and parts[1].isdigit() and int(parts[1]) < len(child_keys[parts[0]]):
            row_key = child_keys[parts[0]][int(parts[1])]
            name = f"{parts[0]}-{row_key}-{parts[2]}" if len(parts) > 2 else parts[0]
            by_input.setdefault(name, []).extend(msgs)
            continue
        by_input.setdefault(str(key), []).extend(msgs)
    return by_input
