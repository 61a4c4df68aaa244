"""Running a report: prompts → filter, drill path → fixed keys, one aggregation through the query service,
then derived measures (ratio, percent of total), labels and the shapes the pages draw (table, pivot, chart, KPI).
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from ..actor import Actor
from ..errors import BadQuery, PermissionDenied
from ..fields.temporal import PERIODS, period_bounds
from ..i18n_text import text
from ..meta.model import Label, ReportDef, ReportGroup, ReportMeasure
from ..meta.reports import BASE_AGGS, SYSTEM_COLUMNS
from ..query.aggregate import AggregateResult, GroupSpec, MeasureSpec, Period
from ..permissions.rules import ab_role
from .buckets import bucket_label, bucket_range

EMPTY = Label("（空）", "(empty)")
MAX_DRILL_KEYS = 4


@dataclass
class Cell:
    key: Any
    label: str


@dataclass
class ResultRow:
    cells: list[Cell]  # one per group shown
    values: dict[str, Any]  # measure name → value (derived measures included)
    drill: list | None = None  # the drill path to open below this row, or None at the last level


@dataclass
class ReportResult:
    report: ReportDef
    groups: list[ReportGroup]  # the groups shown, in order
    group_labels: list[str]
    measures: list[ReportMeasure]
    measure_labels: list[str]
    rows: list[ResultRow]
    totals: dict[str, Any]
    drill: list  # the current drill path (keys of the levels above)
    breadcrumbs: list[tuple[str, list]]  # (label, drill path) from the top
    level: int
    final: bool  # rows of this level lead to the record list, not another level
    columns: list[Cell] = field(default_factory=list)  # pivot column keys
    pivot: dict = field(default_factory=dict)  # (row key tuple, column key) → values
    compare: dict | None = None  # KPI: {"current", "previous", "change"}
    truncated: bool = False
    params: dict = field(default_factory=dict)


# --- who may see a report -----------------------------------------------------------------
def role_names(services, actor: Actor) -> set[str]:
    if not actor.role_ids:
        return set()
    with services.engine.connect() as conn:
        return set(conn.execute(select(ab_role.c.name).where(ab_role.c.id.in_(actor.role_ids))).scalars())


def can_view(services, actor: Actor, report: ReportDef, roles: set[str] | None = None) -> bool:
    """Admins see every report; a personal report its owner and the roles it is shared with; a shared report the roles
    it names (any reader of its source when it names none). Reading the source entity is always required."""
    catalog = services.store.catalog()
    if report.source not in catalog.entities or not services.policy.allows(actor, catalog.entities[report.source], "read"):
        return False
    if actor.is_admin:
        return True
    roles = role_names(services, actor) if roles is None else roles
    if report.owner is not None:
        return report.owner == actor.id or bool(roles & set(report.shared_roles))
    return not report.roles or bool(roles & set(report.roles))


def check_view(services, actor: Actor, report: ReportDef) -> None:
    if not can_view(services, actor, report):
        raise PermissionDenied(text("You may not open the report {name}.", "你无权查看报表“{name}”。", name=report.label))


# --- prompts ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DateRange:
    start: dt.date  # inclusive
    end: dt.date  # exclusive

    def previous(self) -> "DateRange":
        return DateRange(self.start - (self.end - self.start), self.start)


def today(services) -> dt.date:
    return dt.datetime.now(ZoneInfo(services.settings.timezone)).date()


def prompt_range(services, raw: dict, name: str, default: str | None) -> DateRange | None:
    """``p_<name>`` is a period name (this_month, last_30_days, …) or ``custom`` with ``p_<name>_from`` / ``_to``."""
    choice = raw.get(f"p_{name}", default) or "all"
    if choice == "all":
        return None
    if choice == "custom":
        try:
            lo = dt.date.fromisoformat(raw.get(f"p_{name}_from", ""))
            hi = dt.date.fromisoformat(raw.get(f"p_{name}_to", ""))
        except ValueError:
            raise BadQuery(text("Enter the date range as two dates, YYYY-MM-DD.", "请按 YYYY-MM-DD 填写起止日期。")) from None
        if hi < lo:
            raise BadQuery(text("The range ends before it starts.", "结束日期早于开始日期。"))
        return DateRange(lo, hi + dt.timedelta(days=1))
    if choice not in PERIODS:
        raise BadQuery(text("Unknown period '{p}'.", "未知的时间范围“{p}”。", p=choice))
    start, end = period_bounds(choice, today(services))
    return DateRange(start, end)


def range_filter(field_type: str, name: str, r: DateRange) -> dict:
    def v(d: dt.date):
        return d.isoformat() if field_type == "date" else f"{d.isoformat()} 00:00"  # datetimes: local midnight

    return {"and": [{"field": name, "op": "gte", "value": v(r.start)}, {"field": name, "op": "lt", "value": v(r.end)}]}


def prompt_field(catalog, report: ReportDef, name: str):
    entity = catalog.entity(report.source)
    return entity.field_map.get(name) or SYSTEM_COLUMNS[name]


def prompt_filters(services, report: ReportDef, raw: dict) -> tuple[list[dict], DateRange | None, Any]:
    """The filter conditions the prompts add, plus the first date range and its field (for KPI comparison)."""
    catalog = services.store.catalog()
    parts, first_range, range_field = [], None, None
    for p in report.prompts:
        f = prompt_field(catalog, report, p.field)
        if p.type == "date_range":
            r = prompt_range(services, raw, p.name, p.default)
            if r is not None:
                if first_range is None:
                    first_range, range_field = r, f
                parts.append(range_filter(f.type, f.name, r))
        else:
            value = raw.get(f"p_{p.name}", p.default)
            if value not in (None, ""):
                parts.append({"field": f.name, "op": "eq", "value": value})
    return parts, first_range, range_field


# --- drill path ---------------------------------------------------------------------------
def parse_drill(raw: str | None, report: ReportDef) -> list:
    if not raw:
        return []
    try:
        keys = json.loads(raw)
    except ValueError:
        keys = None
    if not isinstance(keys, list) or len(keys) > min(len(report.groups), MAX_DRILL_KEYS) or \
            not all(k is None or isinstance(k, (str, int, bool)) and not isinstance(k, float) for k in keys):
        raise BadQuery(text("The drill-down path is not valid; start again from the top of the report.", "下钻路径无效，请从报表顶层重新开始。"))
    return keys


def key_to_json(v: Any) -> Any:
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return str(v)
    return v


def key_from_json(path, g: ReportGroup, v: Any) -> Any:
    """A key from the URL back into the column's Python type (the same expression is compared, so types must match)."""
    if v is None or g.bucket:
        return v
    try:
        if path.field.type == "date":
            return dt.date.fromisoformat(v)
        if path.field.type == "datetime":
            return dt.datetime.fromisoformat(v)
        if path.field.type in ("decimal", "money", "percent"):
            return decimal.Decimal(v)
        if path.field.type in ("integer", "link", "user", "org_unit") and not isinstance(v, bool):
            return int(v)
    except (ValueError, TypeError, decimal.InvalidOperation):
        raise BadQuery(text("The drill-down path is not valid; start again from the top of the report.", "下钻路径无效，请从报表顶层重新开始。")) from None
    return v


# --- running ------------------------------------------------------------------------------
def base_measures(report: ReportDef) -> list[MeasureSpec]:
    return [MeasureSpec(m.name, m.agg, m.field) for m in report.measures if m.agg in BASE_AGGS]


def run_report(services, actor: Actor, report: ReportDef, params: dict | None = None, *, drill: list | None = None,
               expand: bool = False, locale: str | None = None) -> ReportResult:
    """The report at one drill level (``expand``: every group level at once, as exports use)."""
    check_view(services, actor, report)
    params = dict(params or {})
    locale = locale or actor.locale
    catalog = services.store.catalog()
    drill = list(drill or [])
    if len(drill) > len(report.groups):
        raise BadQuery(text("The drill-down path is not valid; start again from the top of the report.", "下钻路径无效，请从报表顶层重新开始。"))
    parts, rng, rng_field = prompt_filters(services, report, params)
    if report.filter:
        parts.insert(0, dict(report.filter))
    tree = {"and": parts} if parts else None
    if expand:
        shown = list(report.groups)
    else:
        shown = list(report.groups[len(drill):len(drill) + 1])
    across = report.output == "pivot" or report.chart in ("bar", "stacked_bar", "line", "area")
    if report.columns is not None and across and (expand or len(drill) < len(report.groups)):
        grouped = list(shown) + [report.columns]
    else:
        grouped = list(shown)
    from ..meta.reports import resolve_path

    entity = catalog.entity(report.source)
    fixed = []
    for g, key in zip(report.groups, drill):
        p = resolve_path(catalog.entities, entity, g.field, catalog.field_types)
        fixed.append((GroupSpec(g.field, g.bucket), key_from_json(p, g, key)))
    sort = [(s.field, s.descending) for s in report.sort if s.field in {m.name for m in report.measures} or s.field in {g.field for g in shown}]
    periods: tuple[Period, ...] = ()
    if report.chart == "kpi" and report.compare and rng is not None:
        tree = {"and": [p for p in parts if not _is_range_of(p, rng_field.name, rng)]} if parts else None
        tree = tree if tree and tree["and"] else None
        periods = (Period("current", range_filter(rng_field.type, rng_field.name, rng)),
                   Period("previous", range_filter(rng_field.type, rng_field.name, rng.previous())))
    agg = services.queries.aggregate(report.source, actor, groups=[GroupSpec(g.field, g.bucket) for g in grouped],
                                     measures=base_measures(report), filter=tree, sort=sort,
                                     limit=None if len(grouped) > len(shown) else report.limit, periods=periods, keys_equal=fixed)
    return shape(services, actor, report, agg, shown, grouped, drill, params, locale, periods, expand)


def _is_range_of(part: dict, name: str, rng: DateRange) -> bool:
    return isinstance(part, dict) and "and" in part and len(part["and"]) == 2 and all(c.get("field") == name for c in part["and"] if isinstance(c, dict))


def derived(report: ReportDef, values: dict, totals: dict, suffix: str = "") -> dict:
    out = dict(values)
    for m in report.measures:
        if m.agg == "ratio":
            num, den = values.get(f"{m.numerator}{suffix}"), values.get(f"{m.denominator}{suffix}")
            out[m.name + suffix] = (decimal.Decimal(num) / decimal.Decimal(den)) if num is not None and den else None
        elif m.agg == "percent_of_total":
            v, t = values.get(f"{m.of}{suffix}"), totals.get(f"{m.of}{suffix}")
            out[m.name + suffix] = (decimal.Decimal(v) * 100 / decimal.Decimal(t)) if v is not None and t else None
    return out


def shape(services, actor, report, agg: AggregateResult, shown, grouped, drill, params, locale, periods, expand) -> ReportResult:
    catalog = services.store.catalog()
    labelers = [Labeler(services, actor, catalog, p, g, locale) for p, g in zip(agg.groups, grouped)]
    for i, lab in enumerate(labelers):
        lab.prime({r["keys"][i] for r in agg.rows})
    totals = derived(report, agg.totals, agg.totals)
    n_shown = len(shown)
    final = expand or len(drill) + 1 >= len(report.groups)
    rows: list[ResultRow] = []
    columns: list[Cell] = []
    pivot: dict = {}
    if len(grouped) > n_shown:  # pivot: last group goes across
        col_seen: dict = {}
        row_seen: dict = {}
        for r in agg.rows:
            rk, ck = r["keys"][:n_shown], r["keys"][n_shown]
            if ck not in col_seen:
                col_seen[ck] = Cell(key_to_json(ck), labelers[n_shown].label(ck))
            if rk not in row_seen:
                row_seen[rk] = ResultRow([Cell(key_to_json(k), labelers[i].label(k)) for i, k in enumerate(rk)], {},
                                         None if final else drill + [key_to_json(rk[0])])
            pivot[(tuple(key_to_json(k) for k in rk), key_to_json(ck))] = derived(report, r["values"], agg.totals)
            row_vals = row_seen[rk].values
            for name, v in r["values"].items():
                if v is not None and next(m for m in report.measures if m.name == name).agg in ("count", "sum"):
                    row_vals[name] = row_vals.get(name, 0) + v
        order = labelers[n_shown].order
        columns = sorted(col_seen.values(), key=lambda c: order(c.key))
        rows = list(row_seen.values())
        for row in rows:
            row.values = derived(report, row.values, agg.totals)
        if report.limit:
            first = report.measures[0].name
            rows = sorted(rows, key=lambda x: x.values.get(first) or 0, reverse=True)[:report.limit]
    else:
        for r in agg.rows:
            keys = r["keys"]
            values = derived(report, r["values"], agg.totals)
            if periods:
                values = {}
                for p in periods:
                    values.update(derived(report, {k: v for k, v in r["values"].items() if k.endswith("@" + p.name)}, agg.totals, "@" + p.name))
            rows.append(ResultRow([Cell(key_to_json(k), labelers[i].label(k)) for i, k in enumerate(keys)], values,
                                  None if final or not keys else drill + [key_to_json(keys[0])]))
    compare = None
    if periods:
        first = report.measures[0].name
        cur, prev = totals.get(f"{first}@current"), totals.get(f"{first}@previous")
        if not agg.groups:
            vals = agg.rows[0]["values"] if agg.rows else {}
            t2 = {}
            for p in periods:
                t2.update(derived(report, {k: v for k, v in vals.items() if k.endswith("@" + p.name)}, vals, "@" + p.name))
            cur, prev = t2.get(f"{first}@current"), t2.get(f"{first}@previous")
            totals = t2
        change = (decimal.Decimal(cur) - decimal.Decimal(prev)) * 100 / decimal.Decimal(prev) if cur is not None and prev else None
        compare = {"current": cur, "previous": prev, "change": change}
    crumbs: list[tuple[str, list]] = [(report.label.get(locale), [])]
    entity = catalog.entity(report.source)
    from ..meta.reports import resolve_path

    for i, key in enumerate(drill):
        g = report.groups[i]
        p = resolve_path(catalog.entities, entity, g.field, catalog.field_types)
        lab = Labeler(services, actor, catalog, p, g, locale)
        k = key_from_json(p, g, key)
        lab.prime({k})
        crumbs.append((f"{group_label(catalog, report, g, locale)}: {lab.label(k)}", drill[:i + 1]))
    return ReportResult(
        report=report, groups=list(shown), group_labels=[group_label(catalog, report, g, locale) for g in shown],
        measures=list(report.measures), measure_labels=[measure_label(catalog, report, m, locale) for m in report.measures],
        rows=rows, totals=totals, drill=list(drill), breadcrumbs=crumbs, level=len(drill), final=final, columns=columns, pivot=pivot,
        compare=compare, truncated=agg.truncated, params=params,
    )


# --- labels -------------------------------------------------------------------------------
AGG_LABELS = {"count": Label("数量", "Count"), "count_distinct": Label("去重数", "Distinct"), "sum": Label("合计", "Sum"),
              "avg": Label("平均", "Average"), "min": Label("最小", "Min"), "max": Label("最大", "Max"),
              "ratio": Label("比率", "Ratio"), "percent_of_total": Label("占比", "Share of total")}
BUCKET_LABELS = {"day": Label("日", "day"), "week": Label("周", "week"), "month": Label("月", "month"),
                 "quarter": Label("季度", "quarter"), "year": Label("年", "year")}


def path_label(catalog, report: ReportDef, path: str, locale: str) -> str:
    from ..meta.reports import resolve_path

    entity = catalog.entity(report.source)
    p = resolve_path(catalog.entities, entity, path, catalog.field_types)
    parts = [s.field.label.get(locale) for s in p.steps] + [p.field.label.get(locale)]
    return " · ".join(parts)


def group_label(catalog, report: ReportDef, g: ReportGroup, locale: str) -> str:
    if g.label:
        return g.label.get(locale)
    base = path_label(catalog, report, g.field, locale)
    return f"{base}（{BUCKET_LABELS[g.bucket].get(locale)}）" if g.bucket and locale.startswith("zh") else \
        (f"{base} ({BUCKET_LABELS[g.bucket].get(locale)})" if g.bucket else base)


def measure_label(catalog, report: ReportDef, m: ReportMeasure, locale: str) -> str:
    if m.label:
        return m.label.get(locale)
    if m.field:
        return f"{path_label(catalog, report, m.field, locale)} {AGG_LABELS[m.agg].get(locale)}"
    return AGG_LABELS[m.agg].get(locale)


class Labeler:
    """Display text for group keys: option labels, linked titles (as the list page shows them), bucket names."""

    def __init__(self, services, actor, catalog, path, group: ReportGroup, locale: str):
        self.services, self.actor, self.catalog, self.path, self.group, self.locale = services, actor, catalog, path, group, locale
        self.names: dict = {}

    def prime(self, keys: set) -> None:
        f = self.path.field
        if self.group.bucket or f.type not in ("link", "user", "org_unit"):
            return
        rows = [{f.name: k, "_labels": {}, "created_by": None, "updated_by": None, "owner_id": None} for k in keys if k is not None]
        if not rows:
            return
        q = self.services.queries
        with self.services.engine.connect() as conn:
            q._attach_labels(conn, self.catalog, [f], rows, self.locale, self.actor)
        self.names = {r[f.name]: r["_labels"].get(f.name, f"#{r[f.name]}") for r in rows}

    def order(self, key) -> tuple:
        """Sort key for pivot columns: select options in their defined order, empty last, others by value."""
        if key is None:
            return (2, 0, "")
        f = self.path.field
        if f.type == "single_select" and not self.group.bucket:
            values = [o["value"] for o in f.opt("options", ())]
            return (0, values.index(key) if key in values else len(values), str(key))
        return (1, 0, self.label(key)) if f.type in ("link", "user", "org_unit") else (1, 0, str(key))

    def label(self, key) -> str:
        if key is None:
            return EMPTY.get(self.locale)
        if self.group.bucket:
            return bucket_label(self.group.bucket, key, self.locale)
        f = self.path.field
        if f.type in ("link", "user", "org_unit"):
            return self.names.get(key, f"#{key}")
        if f.type == "boolean":
            return ("是" if key else "否") if self.locale.startswith("zh") else ("Yes" if key else "No")
        if f.name in SYSTEM_COLUMNS and f.type in ("integer",):
            return str(key)
        return self.catalog.type_of(f).display(f, key, self.locale) or str(key)


def drill_json(keys: list) -> str:
    return json.dumps(keys, ensure_ascii=False, separators=(",", ":"))


__all__ = ["ReportResult", "ResultRow", "Cell", "run_report", "can_view", "check_view", "parse_drill", "drill_json", "bucket_range"]
