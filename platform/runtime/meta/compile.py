"""Compile validated raw definitions into typed objects, checking references between them."""
from __future__ import annotations

from typing import Any, Iterable

from ..errors import DefinitionError
from ..fields import COMPUTED_TYPES, FieldTypeRegistry, effective_operators
from .expressions import expression_problems, resolve_lookups
from .model import (
    AppDef, EntityDef, FieldDef, FormDef, FormField, FormSection, IndexDef, Label, MenuItem,
    SavedFilter, SortSpec, ValidationRule, ViewDef, frozen,
)
from .reports import check_dashboard, check_report, compile_dashboard, compile_report
from .validate import DefinitionValidator
from .workflows import check_workflow, compile_workflow
from .automations import check_automation, compile_automation

FIELD_KEYS = {"id", "name", "type", "label", "help", "placeholder", "required", "unique", "read_only", "default", "required_if", "visible_if"}
SYSTEM_SORTABLE = ("id", "created_at", "updated_at")
# System columns a filter may name, with the type they filter as (mirrors query.filters.SYSTEM_FIELDS).
SYSTEM_FILTERABLE = {"id": "integer", "created_at": "datetime", "updated_at": "datetime", "created_by": "user", "owner_id": "user"}


class RawDocument:
    """One definition as read from a file or the database, before compiling."""

    __slots__ = ("kind", "app", "body", "source")

    def __init__(self, kind: str, app: str, body: Any, source: str):
        self.kind, self.app, self.body, self.source = kind, app, body, source


def compile_app(body: dict, source: str) -> AppDef:
    return AppDef(
        id=body["id"], version=body["version"], title=Label.of(body["title"]),
        description=Label.of(body.get("description"), ""), depends=tuple(body.get("depends", ())),
        icon=body.get("icon", "app"),
        menu=tuple(MenuItem(m["entity"], Label.of(m["label"]) if m.get("label") else None) for m in body.get("menu", ())),
        source=source,
    )


def compile_entity(app: str, body: dict, source: str) -> EntityDef:
    fields = tuple(
        FieldDef(
            id=f["id"], name=f["name"], type=f["type"], label=Label.of(f["label"]),
            required=bool(f.get("required")), unique=bool(f.get("unique")),
            read_only=bool(f.get("read_only")) or f["type"] in COMPUTED_TYPES,
            default=f.get("default"), help=Label.of(f.get("help"), ""), placeholder=Label.of(f.get("placeholder"), ""),
            config=frozen({k: v for k, v in f.items() if k not in FIELD_KEYS}),
            required_if=f.get("required_if", ""), visible_if=f.get("visible_if", ""),
        )
        for f in body["fields"]
    )
    indexes = tuple(
        IndexDef(name=i.get("name") or f"ix_{app}_{body['name']}_{'_'.join(i['fields'])}"[:60], fields=tuple(i["fields"]), unique=bool(i.get("unique")))
        for i in body.get("indexes", ())
    )
    label = Label.of(body["label"])
    return EntityDef(
        id=body["id"], app=app, name=body["name"], label=label, plural_label=Label.of(body.get("plural_label"), "") if body.get("plural_label") else label,
        fields=fields, title_field=body["title_field"], search_fields=tuple(body.get("search_fields", ())), indexes=indexes,
        icon=body.get("icon", "table"), is_child=bool(body.get("is_child")), parent=body.get("parent"), source=source,
        validations=tuple(ValidationRule(id=v["id"], rule=v["rule"], message=Label.of(v["message"]), fields=tuple(v.get("fields", ())))
                          for v in body.get("validations", ())),
    )


def compile_form(body: dict, source: str) -> FormDef:
    sections = []
    for s in body["sections"]:
        items = []
        for item in s["fields"]:
            if isinstance(item, str):
                items.append(FormField(item))
            else:
                items.append(FormField(item["field"], span=item.get("span", 1), help=Label.of(item["help"]) if item.get("help") else None,
                                       placeholder=Label.of(item["placeholder"]) if item.get("placeholder") else None))
        sections.append(FormSection(id=s["id"], label=Label.of(s["label"]), columns=s.get("columns", 2), fields=tuple(items), tab=s.get("tab")))
    tabs = tuple((t["id"], Label.of(t["label"])) for t in body.get("tabs", ()))
    return FormDef(entity=body["entity"], name=body["name"], sections=tuple(sections), tabs=tabs, source=source)


def compile_view(body: dict, source: str) -> ViewDef:
    return ViewDef(
        entity=body["entity"], name=body["name"], label=Label.of(body["label"]), columns=tuple(body["columns"]),
        default_sort=tuple(SortSpec(s["field"], s.get("dir") == "desc") for s in body.get("default_sort", ())),
        filters=tuple(SavedFilter(f["name"], Label.of(f["label"]), frozen(f["filter"])) for f in body.get("filters", ())),
        page_size=body.get("page_size", 25), source=source,
    )


def compile_documents(docs: Iterable[RawDocument], field_types: FieldTypeRegistry, validator: DefinitionValidator | None = None):
    """Validate and compile; raises one ``DefinitionError`` listing every problem found."""
    from .catalog import Catalog

    validator = validator or DefinitionValidator(field_types)
    problems: list[tuple[str, str, str]] = []
    apps: dict = {}
    entities: dict = {}
    forms: dict = {}
    views: dict = {}
    workflows: dict = {}
    reports: dict = {}
    dashboards: dict = {}
    automations: dict = {}
    docs = list(docs)
    for d in docs:
        found = validator.problems(d.kind, d.body, d.source)
        if found:
            problems.extend(found)
            continue
        if d.kind == "app":
            apps[d.body["id"]] = compile_app(d.body, d.source)
        elif d.kind == "entity":
            e = compile_entity(d.app, d.body, d.source)
            if e.key in entities:
                problems.append((d.source, "/name", f"entity '{e.key}' is defined twice (also in {entities[e.key].source})"))
            entities[e.key] = e
        elif d.kind == "form":
            fm = compile_form(d.body, d.source)
            forms[(fm.entity, fm.name)] = fm
        elif d.kind == "view":
            v = compile_view(d.body, d.source)
            views[(v.entity, v.name)] = v
        elif d.kind == "workflow":
            wf = compile_workflow(d.body, d.source)
            if wf.entity in workflows:
                problems.append((d.source, "/entity", f"{wf.entity} already has a workflow ({workflows[wf.entity].source}); an entity has one"))
            workflows[wf.entity] = wf
        elif d.kind in ("report", "dashboard"):
            compile_analytics(d, reports, dashboards)
        elif d.kind == "automation":
            au = compile_automation(d.body, d.source)
            automations[au.key] = au
    if problems:
        raise DefinitionError(problems)
    entities, lookup_problems = resolve_lookups(entities)
    problems.extend(lookup_problems)
    for e in entities.values():
        problems.extend(check_entity(e, entities, field_types))
        problems.extend(expression_problems(e, entities, field_types))
    for fm in forms.values():
        problems.extend(check_form(fm, entities))
    for v in views.values():
        problems.extend(check_view(v, entities, field_types))
    for wf in workflows.values():
        problems.extend(check_workflow(wf, entities, field_types))
    for a in apps.values():
        for i, m in enumerate(a.menu):
            if m.entity not in entities:
                problems.append((a.source, f"/menu/{i}/entity", f"menu names unknown entity '{m.entity}'"))
        for dep in a.depends:
            if dep not in apps:
                problems.append((a.source, "/depends", f"depends on app '{dep}', which is not installed; install it first"))
    for r in reports.values():
        problems.extend(check_report(r, entities, field_types))
    for dash in dashboards.values():
        problems.extend(check_dashboard(dash, reports))
    for au in automations.values():
        problems.extend(check_automation(au, entities, field_types, workflows))
    if problems:
        raise DefinitionError(problems)
    return Catalog(apps=frozen(apps), entities=frozen(entities), forms=frozen(forms), views=frozen(views), field_types=field_types,
                   workflows=frozen(workflows), reports=frozen(reports), dashboards=frozen(dashboards),
                   automations=frozen(automations))


def compile_analytics(d: RawDocument, reports: dict, dashboards: dict) -> None:
    if d.kind == "report":
        r = compile_report(d.app, d.body, d.source)
        reports[r.key] = r
    else:
        dash = compile_dashboard(d.app, d.body, d.source)
        dashboards[dash.key] = dash


def check_entity(e: EntityDef, entities: dict, field_types: FieldTypeRegistry) -> list:
    out = []
    names: dict[str, int] = {}
    ids: dict[str, int] = {}
    for i, f in enumerate(e.fields):
        at = f"/fields/{i}"
        if f.name in names:
            out.append((e.source, f"{at}/name", f"field name '{f.name}' is used twice (also /fields/{names[f.name]})"))
        names.setdefault(f.name, i)
        if f.id in ids:
            out.append((e.source, f"{at}/id", f"field id '{f.id}' is used twice; every field needs its own stable id"))
        ids.setdefault(f.id, i)
        ft = field_types.get(f.type)
        for msg in ft.check_definition(f, e.key, entities):
            out.append((e.source, at, msg))
        if f.default is not None:
            try:
                ft._deserialize(f, f.default)
            except ValueError as exc:
                out.append((e.source, f"{at}/default", f"default {f.default!r} is not valid: {exc}"))
        if f.unique and not ft.stored:
            out.append((e.source, f"{at}/unique", f"a {f.type} field cannot be unique"))
    if e.title_field not in names:
        out.append((e.source, "/title_field", f"title_field '{e.title_field}' is not a field of this entity"))
    elif not field_types.get(e.field(e.title_field).type).stored:
        out.append((e.source, "/title_field", f"title_field '{e.title_field}' is a {e.field(e.title_field).type} field; a title needs a field with a value"))
    for j, s in enumerate(e.search_fields):
        if s not in names:
            out.append((e.source, f"/search_fields/{j}", f"search field '{s}' is not a field of this entity"))
        elif "contains" not in field_types.get(e.field(s).type).operators:
            out.append((e.source, f"/search_fields/{j}", f"search field '{s}' is a {e.field(s).type} field; search needs a text-like field"))
    for j, ix in enumerate(e.indexes):
        for k, name in enumerate(ix.fields):
            if name not in names:
                out.append((e.source, f"/indexes/{j}/fields/{k}", f"index names unknown field '{name}'"))
            elif not field_types.get(e.field(name).type).stored:
                out.append((e.source, f"/indexes/{j}/fields/{k}", f"field '{name}' has no column to index"))
    if e.is_child and (not e.parent or e.parent not in entities):
        out.append((e.source, "/parent", "a child entity needs \"parent\" naming an existing entity"))
    return out


def check_form(fm: FormDef, entities: dict) -> list:
    ent = entities.get(fm.entity)
    if ent is None:
        return [(fm.source, "/entity", f"form is for unknown entity '{fm.entity}'")]
    out, seen = [], set()
    tab_ids = {t for t, _ in fm.tabs}
    for i, s in enumerate(fm.sections):
        if s.tab and s.tab not in tab_ids:
            out.append((fm.source, f"/sections/{i}/tab", f"section names unknown tab '{s.tab}'"))
        for j, item in enumerate(s.fields):
            if not ent.has_field(item.field):
                out.append((fm.source, f"/sections/{i}/fields/{j}", f"'{item.field}' is not a field of {fm.entity}"))
            elif item.field in seen:
                out.append((fm.source, f"/sections/{i}/fields/{j}", f"field '{item.field}' appears twice in the form"))
            seen.add(item.field)
    return out


def check_view(v: ViewDef, entities: dict, field_types: FieldTypeRegistry) -> list:
    ent = entities.get(v.entity)
    if ent is None:
        return [(v.source, "/entity", f"view is for unknown entity '{v.entity}'")]
    out = []
    for i, c in enumerate(v.columns):
        if c not in SYSTEM_SORTABLE + ("updated_by", "created_by") and not ent.has_field(c):
            out.append((v.source, f"/columns/{i}", f"'{c}' is not a field of {v.entity}"))
    for i, s in enumerate(v.default_sort):
        if s.field in SYSTEM_SORTABLE:
            continue
        if not ent.has_field(s.field):
            out.append((v.source, f"/default_sort/{i}/field", f"'{s.field}' is not a field of {v.entity}"))
        elif not field_types.get(ent.field(s.field).type).sortable or not (field_types.get(ent.field(s.field).type).stored
                                                                           or field_types.get(ent.field(s.field).type).computed):
            out.append((v.source, f"/default_sort/{i}/field", f"'{s.field}' ({ent.field(s.field).type}) cannot be sorted"))
    for i, saved in enumerate(v.filters):
        out.extend((v.source, f"/filters/{i}/filter{p}", m) for p, m in filter_problems(saved.filter, ent, field_types))
    return out


def filter_problems(node, ent: EntityDef, field_types: FieldTypeRegistry, at: str = "") -> list[tuple[str, str]]:
    """(pointer, message) for conditions naming unknown fields or operators the field's type lacks.

    The values are checked when the filter runs, because relative periods depend on the day."""
    if "and" in node or "or" in node:
        key = "and" if "and" in node else "or"
        return [p for j, child in enumerate(node[key]) for p in filter_problems(child, ent, field_types, f"{at}/{key}/{j}")]
    name, op = node["field"], node["op"]
    if name in SYSTEM_FILTERABLE:
        ftype = SYSTEM_FILTERABLE[name]
    elif ent.has_field(name) and (field_types.get(ent.field(name).type).stored or field_types.get(ent.field(name).type).computed):
        ftype = ent.field(name).type
    else:
        return [(f"{at}/field", f"'{name}' is not a field of {ent.key} that can be filtered")]
    ops = field_types.get(ftype).operators if name in SYSTEM_FILTERABLE else effective_operators(field_types.get(ftype), ent.field(name))
    if op not in ops:
        return [(f"{at}/op", f"operator '{op}' does not apply to '{name}' ({ftype}); use one of: {', '.join(ops)}")]
    return []
