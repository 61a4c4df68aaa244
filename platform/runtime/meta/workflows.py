"""Workflow definitions: compiled objects and the checks that need the entity (fields, guard expressions).

A workflow belongs to one entity and drives its ``workflow_state`` system column. The engine that
runs transitions is ``crmkit.runtime.workflow``; this module only knows the definition.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from .model import EMPTY_LABEL, EntityDef, Label, frozen


@dataclass(frozen=True)
class StateDef:
    name: str
    label: Label
    color: str = ""
    initial: bool = False
    final: bool = False


@dataclass(frozen=True)
class Allowed:
    """Who may start a transition: any of the listed roles, the record's owner, the owner's org manager, named users.
    Nothing listed means anyone with the entity's update permission."""

    roles: tuple[str, ...] = ()
    owner: bool = False
    manager: bool = False
    users: tuple[str, ...] = ()

    @property
    def open(self) -> bool:
        return not (self.roles or self.owner or self.manager or self.users)


@dataclass(frozen=True)
class TransitionField:
    field: str
    required: bool = False


@dataclass(frozen=True)
class ApprovalStep:
    kind: str  # role | post | manager | user
    value: str = ""
    label: Label = EMPTY_LABEL


@dataclass(frozen=True)
class Approval:
    mode: str  # sequential: every step in order; any: one approval from any step's approvers
    steps: tuple[ApprovalStep, ...]


@dataclass(frozen=True)
class ActionDef:
    kind: str  # set | run
    values: Mapping[str, Any] = field(default_factory=lambda: frozen({}))
    name: str = ""


@dataclass(frozen=True)
class TransitionDef:
    name: str
    label: Label
    sources: tuple[str, ...]
    target: str
    allowed: Allowed = field(default_factory=Allowed)
    guard: str = ""
    guard_message: Label | None = None
    fields: tuple[TransitionField, ...] = ()
    comment: str = "optional"
    approval: Approval | None = None
    actions: tuple[ActionDef, ...] = ()


@dataclass(frozen=True)
class WorkflowDef:
    entity: str
    name: str
    label: Label
    states: tuple[StateDef, ...]
    transitions: tuple[TransitionDef, ...]
    source: str = ""
    field: str = ""  # a read-only single-select field that mirrors workflow_state ("" for none)

    @property
    def initial(self) -> StateDef:
        return next((s for s in self.states if s.initial), self.states[0])

    def state(self, name: str | None) -> StateDef | None:
        return next((s for s in self.states if s.name == name), None)

    def transition(self, name: str) -> TransitionDef | None:
        return next((t for t in self.transitions if t.name == name), None)

    def from_state(self, state: str | None) -> list[TransitionDef]:
        return [t for t in self.transitions if state in t.sources]

    def between(self, state: str | None, target: str) -> list[TransitionDef]:
        """Transitions that lead from ``state`` to ``target`` (a board move names only the two columns)."""
        return [t for t in self.from_state(state) if t.target == target]


def transition_entity(entity: EntityDef, fields) -> EntityDef:
    """The entity as a transition writes it: the transition's own fields are writable even when read-only in forms."""
    names = set(fields)
    if not any(f.read_only and f.name in names for f in entity.fields):
        return entity
    return replace(entity, fields=tuple(replace(f, read_only=False) if f.name in names else f for f in entity.fields))


def compile_workflow(body: dict, source: str) -> WorkflowDef:
    states = tuple(StateDef(name=s["name"], label=Label.of(s["label"]), color=s.get("color", ""), initial=bool(s.get("initial")),
                            final=bool(s.get("final"))) for s in body["states"])
    transitions = []
    for t in body["transitions"]:
        allowed = t.get("allowed") or {}
        approval = None
        if t.get("approval"):
            steps = []
            for step in t["approval"]["steps"]:
                kind = next(k for k in ("role", "post", "manager", "user") if k in step)
                steps.append(ApprovalStep(kind=kind, value="" if kind == "manager" else str(step[kind]),
                                          label=Label.of(step["label"]) if step.get("label") else EMPTY_LABEL))
            approval = Approval(mode=t["approval"].get("mode", "sequential"), steps=tuple(steps))
        actions = tuple(ActionDef("set", values=frozen(a["set"])) if "set" in a else ActionDef("run", name=a["run"]) for a in t.get("actions", ()))
        transitions.append(TransitionDef(
            name=t["name"], label=Label.of(t["label"]), sources=tuple([t["from"]] if isinstance(t["from"], str) else t["from"]), target=t["to"],
            allowed=Allowed(roles=tuple(allowed.get("roles", ())), owner=bool(allowed.get("owner")), manager=bool(allowed.get("manager")),
                            users=tuple(allowed.get("users", ()))),
            guard=t.get("guard", ""), guard_message=Label.of(t["guard_message"]) if t.get("guard_message") else None,
            fields=tuple(TransitionField(f["field"], bool(f.get("required"))) for f in t.get("fields", ())),
            comment=t.get("comment", "optional"), approval=approval, actions=actions,
        ))
    return WorkflowDef(entity=body["entity"], name=body["name"], label=Label.of(body["label"]), states=states,
                       transitions=tuple(transitions), source=source, field=body.get("field", ""))


def check_workflow(wf: WorkflowDef, entities: Mapping[str, EntityDef], field_types) -> list[tuple[str, str, str]]:
    """Cross-checks as (file, JSON pointer, message): states, transitions, fields and guard expressions."""
    from ..expr import ExpressionError, compile_expression

    src = wf.source
    entity = entities.get(wf.entity)
    if entity is None:
        return [(src, "/entity", f"workflow is for unknown entity '{wf.entity}'")]
    if entity.is_child:
        return [(src, "/entity", f"'{wf.entity}' is a child table; workflows belong to top-level entities")]
    out = []
    if wf.field:
        out.extend(_check_mirror(wf, entity))
    names: dict[str, int] = {}
    for i, s in enumerate(wf.states):
        if s.name in names:
            out.append((src, f"/states/{i}/name", f"state '{s.name}' is defined twice (also /states/{names[s.name]})"))
        names.setdefault(s.name, i)
    initials = [i for i, s in enumerate(wf.states) if s.initial]
    if len(initials) != 1:
        out.append((src, "/states", f"exactly one state must be \"initial\": true (found {len(initials)})"))
    seen: dict[str, int] = {}
    for i, t in enumerate(wf.transitions):
        at = f"/transitions/{i}"
        if t.name in seen:
            out.append((src, f"{at}/name", f"transition '{t.name}' is defined twice (also /transitions/{seen[t.name]})"))
        seen.setdefault(t.name, i)
        for j, source in enumerate(t.sources):
            if source not in names:
                out.append((src, f"{at}/from" + (f"/{j}" if len(t.sources) > 1 else ""), f"'{source}' is not a state of this workflow"))
            elif wf.states[names[source]].final:
                out.append((src, f"{at}/from", f"'{source}' is a final state; no transition can leave it"))
        if t.target not in names:
            out.append((src, f"{at}/to", f"'{t.target}' is not a state of this workflow"))
        for j, tf in enumerate(t.fields):
            f = entity.field_map.get(tf.field)
            if f is None:
                out.append((src, f"{at}/fields/{j}/field", f"'{tf.field}' is not a field of {entity.key}"))
            elif not field_types.get(f.type).stored or f.type in ("sequence", "child_table"):
                out.append((src, f"{at}/fields/{j}/field", f"'{tf.field}' ({f.type}) cannot be filled in on a transition"))
        for j, a in enumerate(t.actions):
            if a.kind != "set":
                continue
            for name, value in a.values.items():
                f = entity.field_map.get(name)
                if f is None:
                    out.append((src, f"{at}/actions/{j}/set/{name}", f"'{name}' is not a field of {entity.key}"))
                    continue
                ft = field_types.get(f.type)
                if not ft.stored or f.type in ("sequence", "child_table"):
                    out.append((src, f"{at}/actions/{j}/set/{name}", f"'{name}' ({f.type}) cannot be set by a transition"))
                    continue
                if value is not None and not (isinstance(value, str) and value.startswith("$")):
                    try:
                        ft._deserialize(f, value)
                    except ValueError as exc:
                        out.append((src, f"{at}/actions/{j}/set/{name}", f"{value!r} is not a valid value: {exc}"))
        if t.guard:
            try:
                compile_expression(t.guard, entity, entities, result="boolean")
            except ExpressionError as exc:
                where = f" (at character {exc.position})" if exc.position is not None else ""
                out.append((src, f"{at}/guard", f"{exc.message}{where}"))
    return out


def _check_mirror(wf: WorkflowDef, entity: EntityDef) -> list[tuple[str, str, str]]:
    """The mirrored field must be a read-only single select whose options include every state, so people cannot
    write it and every state has a column on a board."""
    f = entity.field_map.get(wf.field)
    if f is None:
        return [(wf.source, "/field", f"'{wf.field}' is not a field of {entity.key}")]
    if f.type != "single_select":
        return [(wf.source, "/field", f"'{wf.field}' is a {f.type} field; a workflow mirrors its state into a single-select field")]
    out = []
    if not f.read_only:
        out.append((wf.source, "/field", f"'{wf.field}' must be read-only: only the workflow's transitions change it"))
    options = {o["value"] for o in f.opt("options", ())}
    missing = [s.name for s in wf.states if s.name not in options]
    if missing:
        out.append((wf.source, "/field", f"'{wf.field}' has no option for the state(s) {', '.join(missing)}"))
    return out
