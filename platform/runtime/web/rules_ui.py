"""``visible_if`` / ``required_if`` on the record form, live.

The form carries ``hx-post`` to ``/e/<entity>/form-rules`` on every change (the CSRF token travels in
the ``X-CSRFToken`` header htmx sends from ``<body>``). The server reads the form state, evaluates the
rules with the same functions the record service enforces (records/rules.py) and answers with the
fields that have rules, each re-rendered and swapped out of band (``hx-swap-oob``): shown or hidden,
with or without the required mark. Without JavaScript the form still works: the rules are applied
when the page renders and enforced when it is saved.
"""
from __future__ import annotations

from typing import Any

from ..meta.catalog import Catalog
from ..meta.model import EntityDef
from ..records.rules import field_states, has_rules

NOT_PARSED = ("child_table", "attachment", "formula", "lookup", "rollup")


def rule_fields(entity: EntityDef) -> set[str]:
    """Fields whose visibility or required-ness depends on other values."""
    return {f.name for f in entity.fields if f.visible_if or f.required_if}


def form_record(catalog: Catalog, entity: EntityDef, values: dict) -> dict[str, Any]:
    """Form values (strings as typed) as typed record values; a value that does not parse counts as empty."""
    record: dict[str, Any] = {}
    for f in entity.fields:
        if f.type in NOT_PARSED or f.name not in values:
            continue
        raw = values[f.name]
        if isinstance(raw, str) and raw.strip() == "":
            record[f.name] = None
            continue
        try:
            record[f.name] = catalog.type_of(f)._deserialize(f, raw)
        except (ValueError, TypeError):
            record[f.name] = None
    return record


def apply_states(catalog: Catalog, entity: EntityDef, sections: list, values: dict) -> None:
    """Mark widgets hidden or required as the rules say for these form values."""
    if not has_rules(entity):
        return
    states = field_states(catalog, entity, form_record(catalog, entity, values))
    ruled = rule_fields(entity)
    for s in sections:
        for w in s.widgets:
            if w.field in states and w.kind != "child_table":
                w.ruled = w.field in ruled
                visible, required = states[w.field]
                w.hidden = not visible
                if not w.read_only:
                    w.required = required
