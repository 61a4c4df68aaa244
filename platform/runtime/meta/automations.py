"""Automation definitions: compiled objects and the publish-time checks that need the catalog.

An automation belongs to one entity: a trigger (record created / updated / deleted, a workflow state
entered, a date relative to a date field, a cron schedule, or a manual button), an optional condition in
the expression language, and actions. The engine that runs them is ``crmkit.runtime.automations``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .model import EMPTY_LABEL, EntityDef, Label, frozen

RECORD_TRIGGERS = ("created", "updated", "deleted", "state_entered")
TRIGGER_TYPES = (*RECORD_TRIGGERS, "date", "schedule", "manual")
DATE_TYPES = ("date", "datetime")
UNSETTABLE = ("sequence", "child_table")


@dataclass(frozen=True)
class TriggerDef:
    type: str
    fields: tuple[str, ...] = ()      # updated: fire only when one of these changed (empty: any change)
    state: str = ""                    # state_entered
    field: str = ""                    # date: the date field
    offset_days: int = 0               # date: fire on field + offset (negative: before)
    match: str = "date"                # date: "date" (that day), "anniversary" (that day every year), "month" (the month every year)
    cron: str = ""                     # schedule: five crontab fields, "minute hour day month weekday"


@dataclass(frozen=True)
class AutomationAction:
    kind: str                                       # set | create | message | webhook | run
    options: Mapping[str, Any] = field(default_factory=lambda: frozen({}))


@dataclass(frozen=True)
class AutomationDef:
    entity: str
    name: str
    label: Label
    trigger: TriggerDef
    actions: tuple[AutomationAction, ...]
    condition: str = ""
    enabled: bool = True
    owner: str = ""                                 # a user name: actions run as this user; empty: the system actor
    description: Label = EMPTY_LABEL
    source: str = ""

    @property
    def key(self) -> str:
        return f"{self.entity}:{self.name}"


def compile_automation(body: dict, source: str) -> AutomationDef:
    t = body["trigger"]
    trigger = TriggerDef(type=t["type"], fields=tuple(t.get("fields", ())), state=t.get("state", ""), field=t.get("field", ""),
                         offset_days=int(t.get("offset_days", 0)), match=t.get("match", "date"), cron=t.get("cron", ""))
    actions = []
    for a in body["actions"]:
        kind = next(iter(a))
        opts = a[kind]
        actions.append(AutomationAction(kind, frozen(opts if isinstance(opts, dict) else {"name": opts})))
    return AutomationDef(entity=body["entity"], name=body["name"], label=Label.of(body["label"]), trigger=trigger, actions=tuple(actions),
                         condition=body.get("condition", ""), enabled=body.get("enabled", True), owner=body.get("owner", ""),
                         description=Label.of(body["description"]) if body.get("description") else EMPTY_LABEL, source=source)


def is_expression(value: Any) -> bool:
    """A value given as ``{"expr": "..."}`` is computed from the record; anything else is a literal."""
    return isinstance(value, Mapping) and set(value) == {"expr"} and isinstance(value["expr"], str)


def parse_cron(spec: str):
    """A ``huey.crontab`` validator for "minute hour day month weekday"; ValueError when malformed."""
    from huey import crontab

    parts = spec.split()
    if len(parts) != 5:
        raise ValueError(f"a schedule has five fields (minute hour day month weekday), not {len(parts)}")
    return crontab(minute=parts[0], hour=parts[1], day=parts[2], month=parts[3], day_of_week=parts[4])


def check_automation(a: AutomationDef, entities: Mapping[str, EntityDef], field_types, workflows: Mapping) -> list[tuple[str, str, str]]:
    """Cross-checks as (file, JSON pointer, message): fields, states, expressions (with positions), targets."""
    src = a.source
    entity = entities.get(a.entity)
    if entity is None:
        return [(src, "/entity", f"automation is for unknown entity '{a.entity}'")]
    if entity.is_child:
        return [(src, "/entity", f"'{a.entity}' is a child table; automations belong to top-level entities")]
    out: list[tuple[str, str, str]] = []
    t = a.trigger
    for j, name in enumerate(t.fields):
        if not entity.has_field(name):
            out.append((src, f"/trigger/fields/{j}", f"'{name}' is not a field of {entity.key}"))
    if t.type == "state_entered":
        wf = workflows.get(entity.key)
        if wf is None:
            out.append((src, "/trigger/state", f"{entity.key} has no workflow, so no state can be entered"))
        elif wf.state(t.state) is None:
            out.append((src, "/trigger/state", f"'{t.state}' is not a state of the {wf.name} workflow; states: {', '.join(s.name for s in wf.states)}"))
    if t.type == "date":
        f = entity.field_map.get(t.field)
        if f is None:
            out.append((src, "/trigger/field", f"'{t.field}' is not a field of {entity.key}"))
        elif f.type not in DATE_TYPES:
            out.append((src, "/trigger/field", f"'{t.field}' is a {f.type} field; a date trigger needs a date or datetime field"))
        if t.match == "month" and t.offset_days:
            out.append((src, "/trigger/offset_days", "a month match fires for the whole month; leave offset_days out"))
    if t.type == "schedule":
        try:
            parse_cron(t.cron)
        except (ValueError, TypeError) as exc:
            out.append((src, "/trigger/cron", f"{t.cron!r} is not a schedule: {exc}"))
    if a.condition:
        out.extend(_expr_problem(src, "/condition", a.condition, entity, entities, "boolean"))
    for i, act in enumerate(a.actions):
        at = f"/actions/{i}/{act.kind}"
        if act.kind == "set":
            out.extend(_values_problems(src, at, act.options, entity, entities, field_types, source_entity=entity))
        elif act.kind == "create":
            target = entities.get(act.options["entity"])
            if target is None or target.is_child:
                out.append((src, f"{at}/entity", f"'{act.options['entity']}' is not a top-level entity"))
                continue
            link = act.options.get("link")
            if link:
                lf = target.field_map.get(link)
                if lf is None or lf.type != "link" or lf.opt("target") != entity.key:
                    out.append((src, f"{at}/link", f"'{link}' is not a link field of {target.key} pointing to {entity.key}"))
            out.extend(_values_problems(src, f"{at}/values", act.options.get("values", {}), target, entities, field_types, source_entity=entity))
        elif act.kind == "message":
            o = act.options
            if not o.get("template") and not o.get("body"):
                out.append((src, at, "give a \"template\" key or a \"body\""))
            if o["to"] not in ("$owner", "$creator") and not entity.has_field(o["to"]):
                out.append((src, f"{at}/to", f"'{o['to']}' is not a field of {entity.key} (or use $owner / $creator for in-app messages)"))
            user_field = getattr(entity.field_map.get(o["to"]), "type", None) == "user"
            if o["channel"] == "in_app" and o["to"] not in ("$owner", "$creator") and not user_field:
                out.append((src, f"{at}/to", "in-app messages go to a user: use $owner, $creator or a user field"))
            for key in ("body", "subject"):
                if o.get(key):
                    try:
                        from ..messaging.templates import check_template

                        check_template(o[key], field=key)
                    except Exception as exc:  # noqa: BLE001 - any template error is a definition problem
                        out.append((src, f"{at}/{key}", str(getattr(exc, "errors", None) or exc)))
        elif act.kind == "run":
            from ..packages import discover

            pkg = discover().get(act.options["app"])
            if pkg is None:
                out.append((src, f"{at}/app", f"there is no app '{act.options['app']}'"))
            elif act.options["action"] not in pkg.hooks.actions:
                out.append((src, f"{at}/action", f"app '{pkg.id}' has no action '{act.options['action']}'; it has: {', '.join(sorted(pkg.hooks.actions)) or 'none'}"))
    return out


def _expr_problem(src, at, source, entity, entities, result=None) -> list:
    from ..expr import ExpressionError, compile_expression

    try:
        compile_expression(source, entity, entities, result=result)
    except ExpressionError as exc:
        where = f" (at character {exc.position})" if exc.position is not None else ""
        return [(src, at, f"{exc.message}{where}")]
    return []


def _values_problems(src, at, values, target: EntityDef, entities, field_types, *, source_entity: EntityDef) -> list:
    """Each value names a settable field of ``target``; literals must be valid, expressions read ``source_entity``."""
    out = []
    for name, value in values.items():
        f = target.field_map.get(name)
        if f is None:
            out.append((src, f"{at}/{name}", f"'{name}' is not a field of {target.key}"))
            continue
        ft = field_types.get(f.type)
        if not ft.stored or f.type in UNSETTABLE:
            out.append((src, f"{at}/{name}", f"'{name}' ({f.type}) cannot be set by an automation"))
            continue
        if is_expression(value):
            out.extend(_expr_problem(src, f"{at}/{name}/expr", value["expr"], source_entity, entities))
        elif value is not None:
            try:
                ft._deserialize(f, value)
            except (ValueError, TypeError) as exc:
                out.append((src, f"{at}/{name}", f"{value!r} is not a valid value: {exc}"))
    return out
