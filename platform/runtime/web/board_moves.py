"""Kanban moves on a board grouped by a field a workflow owns (``WorkflowDef.field``).

Such a move is not a field update: it runs the workflow transition that leads from the card's state to the
target column, so who may act, guards, required transition fields and approvals apply exactly as on the
record's workflow card. A move that no transition allows is refused with the reason.
"""
from __future__ import annotations

from ..errors import CrmkitError, StaleRecord
from ..i18n_text import text
from ..workflow.errors import TransitionNotAvailable


def owning_workflow(catalog, entity, field):
    """The entity's workflow when it owns ``field`` (mirrors its state into it), else None."""
    wf = catalog.workflow_of(entity)
    return wf if wf is not None and wf.field and wf.field == field.name else None


def column_fields(wf, entity, locale: str) -> dict[str, dict]:
    """For each state, the fields the transitions into it ask for and the states those transitions leave from
    (the board opens the move dialog only for a card coming from one of them)."""
    out: dict[str, dict] = {}
    for t in wf.transitions:
        if not t.fields:
            continue
        state = wf.state(t.target)
        entry = out.setdefault(t.target, {"fields": [], "from": set(), "label": state.label.get(locale) if state else t.target})
        entry["from"].update(t.sources)
        for tf in t.fields:
            f = entity.field(tf.field)
            if all(x["name"] != f.name for x in entry["fields"]):
                entry["fields"].append({"name": f.name, "label": f.label.get(locale), "required": tf.required, "long": f.type == "long_text",
                                        "type": "date" if f.type == "date" else "text"})
    return out


def move_by_transition(svc, entity, wf, record_id: int, version: int, target: str, actor, values: dict, comment: str):
    """Run the transition from the record's state to ``target``; returns the ``TransitionResult``.

    Raises ``StaleRecord`` when the card is older than the record, ``TransitionNotAvailable`` when no transition
    the actor may start leads there, and whatever the transition raises (guard, fields, permission)."""
    record, available = svc.workflows.available(entity.key, record_id, actor)
    if record["row_version"] != version:
        raise StaleRecord()
    state = record.get("workflow_state") or wf.initial.name
    if state == target:
        raise TransitionNotAvailable(text("The card is already in that column.", "卡片已在该列中。"))
    mine = {a.transition.name for a in available}
    candidates = [t for t in wf.between(state, target) if t.name in mine]
    if not candidates:
        raise TransitionNotAvailable(text("{entity} cannot move from {source} to {target}: no step of the workflow you may take leads there.",
                                          "{entity}不能从“{source}”移到“{target}”：流程中没有你可执行的对应操作。",
                                          entity=entity.label, source=_label(wf, state), target=_label(wf, target)))
    t = candidates[0]
    wanted = {tf.field for tf in t.fields}
    return svc.workflows.transition(entity.key, record_id, t.name, actor, values={k: v for k, v in values.items() if k in wanted},
                                    comment=comment), t


def _label(wf, state):
    s = wf.state(state)
    return s.label if s else state


__all__ = ["CrmkitError", "column_fields", "move_by_transition", "owning_workflow"]
