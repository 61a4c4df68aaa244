"""ECharts options for a report result: categories from the shown group, one series per measure (or per pivot
column for stacked charts), slice colours from select options when the group has them."""
from __future__ import annotations

from typing import Any, Callable

from ..meta.model import Label
from .runner import ReportResult

PALETTE = ["#2563eb", "#10b981", "#f59e0b", "#8b5cf6", "#ef4444", "#06b6d4", "#ec4899", "#84cc16", "#f97316", "#64748b"]
CARTESIAN = ("bar", "stacked_bar", "line", "area")


def _f(v) -> float | None:
    return None if v is None else round(float(v), 4)


def option_colors(services, report, group) -> dict:
    """Option value → colour for select groups (the colours the entity defines)."""
    if group is None or group.bucket:
        return {}
    from ..meta.reports import resolve_path

    catalog = services.store.catalog()
    p = resolve_path(catalog.entities, catalog.entity(report.source), group.field, catalog.field_types)
    if p.field.type != "single_select":
        return {}
    return {o["value"]: o.get("color") for o in p.field.opt("options", ()) if o.get("color")}


def chart_option(services, result: ReportResult, locale: str, url_for_row: Callable[[Any], str | None],
                 url_for_cell: Callable[[Any, Any], str | None]) -> dict:
    """The option object plus ``urls`` (what a click opens) and ``format`` hints for the page script."""
    report = result.report
    kind = report.chart or "bar"
    base = [m for m in result.measures if m.agg != "percent_of_total"]
    first = result.measures[0]
    cats = [" / ".join(c.label for c in r.cells) for r in result.rows]
    colors = option_colors(services, report, result.groups[0] if result.groups else None)
    row_urls = [url_for_row(r) for r in result.rows]
    opt: dict = {"color": PALETTE, "tooltip": {"trigger": "item" if kind in ("pie", "donut", "funnel") else "axis"},
                 "animationDuration": 400}
    formats: dict = {}
    if kind in ("pie", "donut", "funnel"):
        data: list = []
        for r, label in zip(result.rows, cats):
            item: dict[str, Any] = {"name": label, "value": _f(r.values.get(first.name))}
            color = colors.get(r.cells[0].key) if r.cells else None
            if color:
                item["itemStyle"] = {"color": color}
            data.append(item)
        pie: dict[str, Any] = {"type": "funnel" if kind == "funnel" else "pie", "name": result.measure_labels[0], "data": data,
                  "label": {"show": True, "formatter": "{b} {d}%" if kind != "funnel" else "{b} {c}"}}
        if kind == "donut":
            pie["radius"] = ["45%", "72%"]
        elif kind == "pie":
            pie["radius"] = "70%"
        else:
            pie.update({"left": "10%", "width": "80%", "sort": "descending", "gap": 2})
        opt["series"] = [pie]
        opt["legend"] = {"bottom": 0, "type": "scroll"}
        return {"option": opt, "urls": row_urls, "mode": "item", "formats": formats}
    opt.update({"grid": {"left": 56, "right": 24, "top": 40, "bottom": 48, "containLabel": True},
                "xAxis": {"type": "category", "data": cats, "axisLabel": {"hideOverlap": True}},
                "yAxis": {"type": "value"}, "legend": {"top": 0, "type": "scroll"}})
    line = kind in ("line", "area")
    if result.columns:  # one series per pivot column, stacked when asked
        m = first
        series, urls = [], []
        for c in result.columns:
            data = [_f(result.pivot.get((tuple(x.key for x in r.cells), c.key), {}).get(m.name)) for r in result.rows]
            s: dict[str, Any] = {"type": "line" if line else "bar", "name": c.label, "data": data}
            if kind == "stacked_bar" or kind == "area":
                s["stack"] = "total"
            if kind == "area":
                s["areaStyle"] = {"opacity": 0.25}
            s["emphasis"] = {"focus": "series"}
            series.append(s)
            urls.append([url_for_cell(r, c.key) for r in result.rows])
        opt["series"] = series
        return {"option": opt, "urls": urls, "mode": "cell", "formats": formats}
    series = []
    for m, label in zip(result.measures, result.measure_labels):
        if m not in base:
            continue
        s = {"type": "line" if line else "bar", "name": label, "data": [_f(r.values.get(m.name)) for r in result.rows],
             "label": {"show": len(result.rows) <= 12, "position": "top"}}
        if kind == "stacked_bar" or kind == "area":
            s["stack"] = "total"
        if kind == "area":
            s["areaStyle"] = {"opacity": 0.25}
        if line:
            s["symbolSize"] = 6
        if len(base) == 1 and colors and not line:
            s["data"] = [{"value": v, "itemStyle": {"color": colors.get(r.cells[0].key)}} if colors.get(r.cells[0].key) else v
                         for v, r in zip(s["data"], result.rows)]
        series.append(s)
    if len(series) > 1 and len({m.agg for m in base}) > 1:  # counts and money on one chart: second axis
        opt["yAxis"] = [{"type": "value"}, {"type": "value", "splitLine": {"show": False}}]
        for i, s in enumerate(series):
            s["yAxisIndex"] = 0 if i == 0 else 1
    opt["series"] = series
    return {"option": opt, "urls": row_urls, "mode": "row", "formats": formats}


EMPTY = Label("暂无数据", "No data")
