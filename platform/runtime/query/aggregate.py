"""Aggregations for reports and dashboards: one GROUP BY select built on the same filter compiler and policy.

``QueryService.aggregate`` is the entry point. The select:
- starts from the source table with the actor's row filter and the non-deleted condition, exactly as lists do,
  so a total never includes a row the actor cannot see;
- follows link paths (``level.name``, ``store.region.name``) with LEFT JOINs whose ON clause carries the target's
  own row filter: a linked row the actor may not read contributes no value (its rows group under "empty");
- refuses (``BadQuery``) any field the actor may not read, any masked field they may not unmask, and any entity
  on the path they may not read;
- buckets dates into day / week / month / quarter / year as ``YYYY-MM-DD`` / ``YYYY-MM`` / ``YYYY-Qn`` / ``YYYY``
  strings in the configured timezone, with portable SQL (strftime on SQLite, to_char on PostgreSQL);
- carries grand totals as window functions over the aggregates (computed before LIMIT), and optional
  periods (current / previous) as conditional aggregates, so a report is still one statement.
"""
from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import DateTime, Integer, String, and_, case, cast, func, literal, or_, select
from sqlalchemy.sql import ColumnElement

from ..actor import Actor
from ..errors import BadQuery
from ..fields import FilterContext
from ..i18n_text import Text, text
from ..meta.model import EntityDef, FieldDef
from ..meta.reports import BASE_AGGS, BUCKETS, NUMERIC, ORDERED, SYSTEM_COLUMNS, PathError, ResolvedPath, resolve_path
from .filters import compile_filter

MAX_ROWS = 5000


@dataclass(frozen=True)
class GroupSpec:
    field: str  # a path: ``gender``, ``level``, ``level.color``, ``created_at``
    bucket: str | None = None


@dataclass(frozen=True)
class MeasureSpec:
    name: str
    agg: str  # count, count_distinct, sum, avg, min, max
    field: str | None = None


@dataclass(frozen=True)
class Period:
    """A named slice measured side by side (KPI comparison): measures are computed once per period."""
    name: str
    filter: Any


@dataclass
class AggregateResult:
    groups: list[ResolvedPath]
    rows: list[dict]  # {"keys": tuple, "values": {measure or measure@period: value}}
    totals: dict  # measure (or measure@period) → grand total over every group (None when not additive)
    sql: str = ""
    truncated: bool = False
    measures: list[MeasureSpec] = field(default_factory=list)


def _num(v):
    if isinstance(v, float):
        return decimal.Decimal(repr(v))
    return v


class Aggregator:
    """Compiles one aggregate request for one actor. Built by ``QueryService.aggregate``; not kept."""

    def __init__(self, queries, actor: Actor):
        self.q = queries
        self.actor = actor
        self.catalog = queries.catalog()
        self.tables = queries.table_cache.tables(self.catalog)
        self.policy = queries.policy
        self.dialect = queries.engine.dialect.name
        self.timezone = queries.timezone
        self.clock = queries.clock
        self._joins: dict[tuple[str, ...], Any] = {}
        self._from: Any = None  # a FromClause once the base table is chosen, joined as paths are resolved

    # --- paths --------------------------------------------------------------------------
    def resolve(self, source: EntityDef, path: str, *, purpose: str) -> ResolvedPath:
        try:
            p = resolve_path(self.catalog.entities, source, path, self.catalog.field_types)
        except PathError as exc:
            raise BadQuery(text("Cannot use '{path}' in a report: {problem}.", "报表不能使用“{path}”：{problem}。", path=path, problem=str(exc))) from None
        for step in p.steps:
            self._check_field(step.entity, step.field, path, "join")
            if not self.policy.allows(self.actor, step.target, "read"):
                raise BadQuery(text("Cannot use '{path}': you may not read {entity}.", "不能使用“{path}”：你无权查看{entity}。",
                                    path=path, entity=Text(step.target.key, step.target.plural_label.zh)))
        if p.field.name not in SYSTEM_COLUMNS:
            self._check_field(p.entity, p.field, path, purpose)
        return p

    def _check_field(self, entity: EntityDef, f: FieldDef, path: str, purpose: str) -> None:
        if f.name not in self.policy.readable_fields(self.actor, entity):
            raise BadQuery(text("Cannot use '{path}' in a report: {entity} has no such field you can read.",
                                "报表不能使用“{path}”：{entity}没有这个字段，或你无权读取。", path=path, entity=Text(entity.key, entity.label.zh)))
        if purpose != "show" and f.name not in self.policy.comparable_fields(self.actor, entity):
            raise BadQuery(text("Cannot group or filter by '{path}': it is masked and you may not unmask it.",
                                "不能按“{path}”分组或筛选：该字段已脱敏，你无权查看明文。", path=path))

    def column(self, source: EntityDef, p: ResolvedPath) -> ColumnElement:
        """The leaf column, joining the path's tables once each (LEFT JOIN, target row filter in the ON clause)."""
        table = self.tables[source.key]
        prefix: tuple[str, ...] = ()
        for step in p.steps:
            prefix = prefix + (step.field.name,)
            alias = self._joins.get(prefix)
            if alias is None:
                alias = self.tables[step.target.key].alias(f"j{len(self._joins) + 1}")
                on = [alias.c.id == table.c[step.field.name], alias.c.deleted_at.is_(None)]
                scope = self.policy.row_filter(self.actor, step.target, alias, self.catalog)
                if scope is not None:
                    on.append(scope)
                self._from = self._from.outerjoin(alias, and_(*on))
                self._joins[prefix] = alias
            table = alias
        return table.c[p.field.name]

    # --- buckets ------------------------------------------------------------------------
    def local(self, col: ColumnElement, ftype: str) -> ColumnElement:
        """The value as a local date/time in the configured timezone (datetimes are stored in UTC)."""
        if ftype != "datetime":
            return cast(col, DateTime()) if self.dialect == "postgresql" else col
        if self.dialect == "postgresql":
            return func.timezone(self.timezone, col)
        # SQLite has no time zone database: shift by the zone's current offset (exact for zones without DST,
        # such as Asia/Shanghai; see docs/reports.md).
        offset = self.clock().astimezone(ZoneInfo(self.timezone)).utcoffset() or dt.timedelta()
        return func.datetime(col, f"{int(offset.total_seconds() // 60):+d} minutes")

    def bucket(self, col: ColumnElement, ftype: str, bucket: str) -> ColumnElement:
        if bucket not in BUCKETS:
            raise BadQuery(text("Unknown date bucket '{b}'; use day, week, month, quarter or year.", "未知的日期分组“{b}”：请用 day、week、month、quarter 或 year。", b=bucket))
        x = self.local(col, ftype)
        if self.dialect == "postgresql":
            if bucket == "week":
                return func.to_char(func.date_trunc("week", x), "YYYY-MM-DD")
            return func.to_char(x, {"day": "YYYY-MM-DD", "month": "YYYY-MM", "quarter": 'YYYY-"Q"Q', "year": "YYYY"}[bucket])
        if bucket == "week":
            return func.strftime("%Y-%m-%d", x, "weekday 0", "-6 days")  # Monday of the ISO week
        if bucket == "quarter":
            month = cast(func.strftime("%m", x), Integer)
            return func.strftime("%Y", x) + literal("-Q") + cast((month + 2) // 3, String)
        return func.strftime({"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}[bucket], x)

    def group_column(self, entity: EntityDef, g: GroupSpec):
        p = self.resolve(entity, g.field, purpose="group")
        col = self.column(entity, p)
        if g.bucket:
            if p.field.type not in ("date", "datetime"):
                raise BadQuery(text("Only date fields can be bucketed; '{path}' is not one.", "只有日期字段可以按时间分段；“{path}”不是日期字段。", path=g.field))
            col = self.bucket(col, p.field.type, g.bucket)
        return p, col

    # --- measures -----------------------------------------------------------------------
    def measure_expr(self, source: EntityDef, m: MeasureSpec, cond: ColumnElement | None):
        if m.agg not in BASE_AGGS:
            raise BadQuery(text("Unknown measure '{agg}'.", "未知的统计方式“{agg}”。", agg=m.agg))
        if m.agg == "count" and not m.field:
            target = self.tables[source.key].c.id
        else:
            if not m.field:
                raise BadQuery(text("The measure '{name}' needs a field.", "统计项“{name}”需要指定字段。", name=m.name))
            p = self.resolve(source, m.field, purpose="measure")
            if m.agg in ("sum", "avg") and p.field.type not in NUMERIC:
                raise BadQuery(text("Cannot {agg} '{path}': it is not a number field.", "不能对“{path}”求{agg}：它不是数字字段。", agg=m.agg, path=m.field))
            if m.agg in ("min", "max") and p.field.type not in ORDERED:
                raise BadQuery(text("Cannot take {agg} of '{path}'.", "不能对“{path}”取{agg}。", agg=m.agg, path=m.field))
            target = self.column(source, p)
        if cond is not None:
            target = case((cond, target), else_=None)
        if m.agg == "count":
            return func.count(target)
        if m.agg == "count_distinct":
            return func.count(target.distinct())
        aggregates: dict[str, Callable[[Any], ColumnElement[Any]]] = {"sum": func.sum, "avg": func.avg, "min": func.min, "max": func.max}
        return aggregates[m.agg](target)

    # --- the statement ------------------------------------------------------------------
    def build(self, entity_key: str, groups: Sequence[GroupSpec], measures: Sequence[MeasureSpec], *, filter: Any = None,
              sort: Sequence[tuple[str, bool]] = (), limit: int | None = None, periods: Sequence[Period] = (),
              keys_equal: Sequence[tuple[GroupSpec, Any]] = ()):
        """``keys_equal``: (group, key) pairs a drill-down fixed; compared with the very expression that grouped them."""
        entity = self.catalog.entity(entity_key)
        self.policy.check(self.actor, entity, "read")
        if not measures:
            raise BadQuery(text("A report needs at least one measure.", "报表至少需要一个统计项。"))
        names = [m.name for m in measures]
        if len(set(names)) != len(names):
            raise BadQuery(text("Measure names must be unique.", "统计项名称不能重复。"))
        table = self.tables[entity.key]
        self._from = table
        comparable = self.policy.comparable_fields(self.actor, entity)
        ctx = FilterContext(self.dialect, self.timezone, self.clock())
        where = [table.c.deleted_at.is_(None)]
        scope = self.policy.row_filter(self.actor, entity, table, self.catalog)
        if scope is not None:
            where.append(scope)
        if filter:
            where.append(compile_filter(self.catalog, entity, table, filter, ctx, comparable))
        period_conds = [(p.name, compile_filter(self.catalog, entity, table, p.filter, ctx, comparable)) for p in periods]
        if period_conds:
            where.append(or_(*[c for _, c in period_conds]))
        for g, key in keys_equal:
            _, col = self.group_column(entity, g)
            where.append(col.is_(None) if key is None else col == key)
        resolved, keys = [], []
        for i, g in enumerate(groups):
            p, col = self.group_column(entity, g)
            resolved.append(p)
            keys.append(col.label(f"g{i}"))
        cols, totals = [], []
        for m in measures:
            slices = [(m.name, None)] if not period_conds else [(f"{m.name}@{n}", c) for n, c in period_conds]
            for label, cond in slices:
                agg = self.measure_expr(entity, m, cond)
                cols.append(agg.label(label))
                if keys:
                    totals += self._window_totals(m, label, agg, entity, cond)
        q = select(*keys, *cols, *totals).select_from(self._from).where(*where)
        if keys:
            q = q.group_by(*[k.element for k in keys])
        order = []
        for name, desc in sort:
            if name in names:
                target = next(c for c in cols if c.name == (name if not period_conds else f"{name}@{period_conds[0][0]}"))
            else:
                idx = next((i for i, g in enumerate(groups) if g.field == name), None)
                if idx is None:
                    raise BadQuery(text("Cannot sort by '{name}': it is neither a measure nor a group of this report.",
                                        "不能按“{name}”排序：它不是本报表的统计项或分组。", name=name))
                target = keys[idx]
            expr = target.element if hasattr(target, "element") else target
            order.append(expr.desc().nulls_last() if desc else expr.asc().nulls_first())
        order += [k.element.asc().nulls_first() for k in keys]
        if order:
            q = q.order_by(*order)
        cap = min(limit or MAX_ROWS, MAX_ROWS)
        q = q.limit(cap + 1)
        return entity, resolved, q, cap

    def _window_totals(self, m: MeasureSpec, label: str, agg, entity, cond) -> list:
        """Grand totals as window functions over the grouped aggregates (before LIMIT, so top N keeps true totals)."""
        if m.agg == "count" or m.agg == "sum":
            return [func.sum(agg).over().label(f"t:{label}")]
        if m.agg in ("min", "max"):
            return [getattr(func, m.agg)(agg).over().label(f"t:{label}")]
        if m.agg == "avg":
            s = self.measure_expr(entity, MeasureSpec(m.name, "sum", m.field), cond)
            n = self.measure_expr(entity, MeasureSpec(m.name, "count", m.field), cond)
            return [func.sum(s).over().label(f"ts:{label}"), func.sum(n).over().label(f"tn:{label}")]
        return []  # a distinct count does not add up across groups


def run_aggregate(queries, actor: Actor, entity_key: str, groups, measures, *, filter=None, sort=(), limit=None, periods=(),
                  keys_equal=()) -> AggregateResult:
    agg = Aggregator(queries, actor)
    entity, resolved, q, cap = agg.build(entity_key, groups, measures, filter=filter, sort=sort, limit=limit, periods=periods,
                                         keys_equal=keys_equal)
    labels = [c.name for c in q.selected_columns]
    with queries.engine.connect() as conn:
        raw = conn.execute(q).all()
    truncated = len(raw) > cap
    raw = raw[:cap]
    n_keys = len(resolved)
    rows: list = []
    totals: dict = {}
    for r in raw:
        values = {}
        for name, v in zip(labels[n_keys:], r[n_keys:]):
            if ":" not in name:
                values[name] = _num(v)
        rows.append({"keys": tuple(r[:n_keys]), "values": values})
    measure_labels = [n for n in labels[n_keys:] if ":" not in n]
    if not n_keys:
        totals = dict(rows[0]["values"]) if rows else {n: None for n in measure_labels}
    elif raw:
        first = dict(zip(labels, raw[0]))
        for name in measure_labels:
            base = name.split("@")[0]
            m = next(x for x in measures if x.name == base)
            if f"t:{name}" in first:
                totals[name] = _num(first[f"t:{name}"])
            elif f"ts:{name}" in first:
                s, n = _num(first[f"ts:{name}"]), first[f"tn:{name}"]
                totals[name] = (decimal.Decimal(s) / n) if n else None
            else:
                totals[name] = None
            if m.agg == "count" and totals[name] is None:
                totals[name] = 0
    else:
        totals = {n: (0 if next(x for x in measures if x.name == n.split("@")[0]).agg in ("count", "count_distinct") else None) for n in measure_labels}
    return AggregateResult(groups=resolved, rows=rows, totals=totals, truncated=truncated, measures=list(measures),
                           sql=str(q.compile(queries.engine)))
