"""Report and dashboard definitions: compiling them into ``ReportDef`` / ``DashboardDef`` and checking
their references against the entities (field paths through links, buckets, measures, prompts, sort).

Permission checks happen when a report runs, against the actor; here only the definition's own sense.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..fields import FieldTypeRegistry
from .model import (
    DashboardDef, DashboardWidget, EntityDef, FieldDef, Label, ReportDef, ReportGroup, ReportMeasure, ReportPrompt, SortSpec,
    EMPTY_LABEL, frozen,
)

BUCKETS = ("day", "week", "month", "quarter", "year")
BASE_AGGS = ("count", "count_distinct", "sum", "avg", "min", "max")
NUMERIC = ("integer", "decimal", "money", "percent")
ORDERED = NUMERIC + ("date", "datetime")
CHARTS = ("bar", "stacked_bar", "line", "area", "pie", "donut", "funnel", "kpi")

# System columns a report may group by or count, with the type they behave as.
SYSTEM_COLUMNS = {
    "id": FieldDef(id="sys_id", name="id", type="integer", label=Label("编号", "ID")),
    "created_at": FieldDef(id="sys_created_at", name="created_at", type="datetime", label=Label("创建时间", "Created")),
    "updated_at": FieldDef(id="sys_updated_at", name="updated_at", type="datetime", label=Label("更新时间", "Updated")),
    "created_by": FieldDef(id="sys_created_by", name="created_by", type="user", label=Label("创建人", "Created by")),
    "owner_id": FieldDef(id="sys_owner_id", name="owner_id", type="user", label=Label("负责人", "Owner")),
    "org_unit_id": FieldDef(id="sys_org_unit_id", name="org_unit_id", type="org_unit", label=Label("所属组织", "Org unit")),
}


@dataclass(frozen=True)
class PathStep:
    """One link followed: ``field`` of ``entity`` points at ``target``."""
    entity: EntityDef
    field: FieldDef
    target: EntityDef


@dataclass(frozen=True)
class ResolvedPath:
    path: str
    steps: tuple[PathStep, ...]  # the links followed, in order
    entity: EntityDef  # the entity holding the leaf field
    field: FieldDef  # the leaf field


class PathError(ValueError):
    pass


def resolve_path(entities, source: EntityDef, path: str, field_types: FieldTypeRegistry) -> ResolvedPath:
    """``level.name`` → the member's level link, then the level's name. Raises ``PathError`` (English) when it does not resolve."""
    parts = path.split(".")
    entity, steps = source, []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        f = SYSTEM_COLUMNS.get(part) if last else None
        if f is None:
            f = entity.field_map.get(part)
        if f is None:
            raise PathError(f"'{part}' is not a field of {entity.key}")
        if not last:
            if f.type != "link":
                raise PathError(f"'{part}' of {entity.key} is a {f.type} field; only link fields can be followed")
            target = entities.get(f.opt("target"))
            if target is None:
                raise PathError(f"'{part}' links to unknown entity '{f.opt('target')}'")
            steps.append(PathStep(entity, f, target))
            entity = target
            continue
        if f.name not in SYSTEM_COLUMNS and not field_types.get(f.type).stored:
            raise PathError(f"'{part}' is a {f.type} field; it has no value to group or measure")
        if f.type in ("multi_select", "tags", "attachment", "long_text"):
            raise PathError(f"'{part}' is a {f.type} field; reports group and measure single values only")
        return ResolvedPath(path, tuple(steps), entity, f)
    raise PathError("empty path")


def compile_report(app: str, body: dict, source: str) -> ReportDef:
    def group(g):
        return ReportGroup(g["field"], g.get("bucket"), Label.of(g["label"]) if g.get("label") else None)

    out = body.get("output") or {"type": "table"}
    return ReportDef(
        app=app, name=body["name"], label=Label.of(body["label"]), source=body["source"],
        measures=tuple(ReportMeasure(m["name"], m["agg"], m.get("field"), m.get("of"), m.get("numerator"), m.get("denominator"),
                                     Label.of(m["label"]) if m.get("label") else None, m.get("format", "percent" if m["agg"] == "percent_of_total" else "number"))
                       for m in body["measures"]),
        groups=tuple(group(g) for g in body.get("groups", ())),
        columns=group(body["columns"]) if body.get("columns") else None,
        filter=frozen(body["filter"]) if body.get("filter") else None,
        prompts=tuple(ReportPrompt(p["name"], p["type"], p["field"], Label.of(p["label"]) if p.get("label") else None, p.get("default"))
                      for p in body.get("prompts", ())),
        sort=tuple(SortSpec(s["by"], s.get("dir") == "desc") for s in body.get("sort", ())),
        limit=body.get("limit"), output=out["type"], chart=out.get("chart"), compare=out.get("compare"),
        description=Label.of(body.get("description"), "") if body.get("description") else EMPTY_LABEL,
        roles=tuple(body.get("roles", ())), owner=body.get("owner"), shared_roles=tuple(body.get("shared_roles", ())),
        source_file=source,
    )


def compile_dashboard(app: str, body: dict, source: str) -> DashboardDef:
    return DashboardDef(
        app=app, name=body["name"], label=Label.of(body["label"]),
        widgets=tuple(DashboardWidget(w["report"], Label.of(w["title"]) if w.get("title") else None, w.get("width", 6), w.get("height", "medium"))
                      for w in body["widgets"]),
        description=Label.of(body.get("description"), "") if body.get("description") else EMPTY_LABEL,
        roles=tuple(body.get("roles", ())), source=source,
    )


def check_report(r: ReportDef, entities, field_types: FieldTypeRegistry) -> list[tuple[str, str, str]]:
    from .compile import filter_problems

    src = r.source_file
    source = entities.get(r.source)
    if source is None:
        return [(src, "/source", f"report source '{r.source}' is not an installed entity")]
    out = []

    def check_group(g: ReportGroup, at: str):
        try:
            p = resolve_path(entities, source, g.field, field_types)
        except PathError as exc:
            out.append((src, f"{at}/field", str(exc)))
            return
        if g.bucket and p.field.type not in ("date", "datetime"):
            out.append((src, f"{at}/bucket", f"'{g.field}' is a {p.field.type} field; only date and date-time fields have {g.bucket} buckets"))

    for i, g in enumerate(r.groups):
        check_group(g, f"/groups/{i}")
    if r.columns is not None:
        check_group(r.columns, "/columns")
    names = [m.name for m in r.measures]
    base = {m.name for m in r.measures if m.agg in BASE_AGGS}
    for i, m in enumerate(r.measures):
        at = f"/measures/{i}"
        if names.count(m.name) > 1:
            out.append((src, f"{at}/name", f"measure name '{m.name}' is used twice"))
        if m.agg in BASE_AGGS and m.field:
            try:
                p = resolve_path(entities, source, m.field, field_types)
            except PathError as exc:
                out.append((src, f"{at}/field", str(exc)))
                continue
            if m.agg in ("sum", "avg") and p.field.type not in NUMERIC:
                out.append((src, f"{at}/field", f"{m.agg} needs a number field; '{m.field}' is {p.field.type}"))
            if m.agg in ("min", "max") and p.field.type not in ORDERED:
                out.append((src, f"{at}/field", f"{m.agg} needs a number or date field; '{m.field}' is {p.field.type}"))
        for key in ("of", "numerator", "denominator"):
            ref = getattr(m, key)
            if ref is not None and ref not in base:
                out.append((src, f"{at}/{key}", f"'{ref}' is not a count, sum, avg, min or max measure of this report"))
        if m.agg == "percent_of_total" and m.of in base and r.measure(m.of).agg not in ("count", "sum"):
            out.append((src, f"{at}/of", "percent of total needs a count or sum measure"))
    group_fields = [g.field for g in r.groups]
    for i, s in enumerate(r.sort):
        if s.field not in names and s.field not in group_fields:
            out.append((src, f"/sort/{i}/by", f"sort by '{s.field}': name a measure or a group field of this report"))
        elif s.field in names and r.measure(s.field).agg not in BASE_AGGS:
            out.append((src, f"/sort/{i}/by", f"'{s.field}' is computed after the query; sort by a count, sum, avg, min or max measure"))
    for i, prompt in enumerate(r.prompts):
        pf = source.field_map.get(prompt.field) or SYSTEM_COLUMNS.get(prompt.field)
        if pf is None:
            out.append((src, f"/prompts/{i}/field", f"'{prompt.field}' is not a field of {source.key}"))
        elif prompt.type == "date_range" and pf.type not in ("date", "datetime"):
            out.append((src, f"/prompts/{i}/field", f"a date range prompt needs a date field; '{prompt.field}' is {pf.type}"))
        elif prompt.type == "value" and pf.type not in ("link", "single_select", "boolean", "user", "org_unit", "text", "integer"):
            out.append((src, f"/prompts/{i}/field", f"a value prompt needs a link, select, boolean, user, org unit, text or integer field; '{prompt.field}' is {pf.type}"))
    if r.filter:
        out.extend((src, f"/filter{p}", msg) for p, msg in filter_problems(r.filter, source, field_types))
    if r.output == "chart" and r.chart is None:
        out.append((src, "/output/chart", "a chart report names its chart: " + ", ".join(CHARTS)))
    if r.output == "pivot" and r.columns is None:
        out.append((src, "/columns", "a pivot report needs \"columns\": the group shown across"))
    if r.output == "pivot" and not r.groups:
        out.append((src, "/groups", "a pivot report needs at least one row group"))
    if r.chart == "kpi" and r.compare and not any(p.type == "date_range" for p in r.prompts):
        out.append((src, "/output/compare", "comparing with the previous period needs a date range prompt"))
    if r.chart in ("bar", "stacked_bar", "line", "area", "pie", "donut", "funnel") and not r.groups:
        out.append((src, "/groups", f"a {r.chart} chart needs at least one group"))
    return out


def check_dashboard(d: DashboardDef, reports) -> list[tuple[str, str, str]]:
    return [(d.source, f"/widgets/{i}/report", f"dashboard widget names unknown report '{w.report}'")
            for i, w in enumerate(d.widgets) if w.report not in reports]
