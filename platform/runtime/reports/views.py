"""Report and dashboard pages (``crmkit_reports`` blueprint): the report list, one report with its prompts,
drill-down and breadcrumbs (htmx swaps the result region), the record list behind a cell, exports, dashboards."""
from __future__ import annotations

import datetime as dt
import decimal
import json
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from markupsafe import Markup

from ..audit import record_event_now
from ..errors import BadQuery, CrmkitError, PermissionDenied, RecordNotFound
from ..fields.temporal import PERIODS
from ..i18n_text import localize, text
from ..meta.model import DashboardDef, Label, ReportDef
from ..web.actors import current_actor
from ..web.i18n import current_locale, translate
from .chart import chart_option
from .export import export_report
from .links import record_list_params
from .runner import ReportResult, can_view, drill_json, parse_drill, role_names, run_report

reports_blueprint = Blueprint("crmkit_reports", __name__)

CHART_JS_KINDS = ("bar", "stacked_bar", "line", "area", "pie", "donut", "funnel")


def services():
    return current_app.extensions["crmkit"]


def acting():
    actor = current_actor()
    if actor is None:
        raise PermissionDenied(text("Log in first.", "请先登录。"))
    return actor


@reports_blueprint.before_request
def login_required():
    if not current_user.is_authenticated:
        return redirect(url_for(current_app.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.full_path))
    return None


@reports_blueprint.app_template_filter("rnum")
def format_number(value, fmt: str = "number"):
    """zh-CN style grouping (1,234.5); money with ¥ and two decimals; percent with one decimal."""
    if value is None or value == "":
        return "—"
    try:
        v = decimal.Decimal(str(value))
    except decimal.InvalidOperation:
        return str(value)
    if fmt == "percent":
        return f"{v:,.1f}%"
    if fmt == "money":
        return f"¥{v:,.2f}"
    if v == v.to_integral_value():
        return f"{int(v):,}"
    return f"{v:,.2f}"


def prompt_params(args) -> dict:
    return {k: v[:40] for k, v in args.items() if k.startswith("p_")}


def visible_reports(svc, actor) -> list[ReportDef]:
    catalog = svc.store.catalog()
    roles = role_names(svc, actor)
    return [r for r in catalog.reports.values() if can_view(svc, actor, r, roles)]


def can_view_dashboard(svc, actor, d: DashboardDef, roles=None) -> bool:
    """Admins open every dashboard; one assigned to roles is for those roles; one assigned to nobody is for whoever may
    run at least one of its widgets (otherwise it would be a page of "not available to you" tiles in every sidebar)."""
    if actor.is_admin:
        return True
    roles = role_names(svc, actor) if roles is None else roles
    if d.roles:
        return bool(roles & set(d.roles))
    reports = svc.store.catalog().reports
    return any(w.report in reports and can_view(svc, actor, reports[w.report], roles) for w in d.widgets)


def visible_dashboards(svc, actor) -> list[DashboardDef]:
    """The dashboards the actor may open (the sidebar lists them on every page)."""
    dashboards = list(svc.store.catalog().dashboards.values())
    if actor.is_admin or not dashboards:
        return dashboards
    roles = role_names(svc, actor)
    return [d for d in dashboards if can_view_dashboard(svc, actor, d, roles)]


def report_of(key: str) -> ReportDef:
    svc = services()
    report = svc.store.catalog().report(key)
    if not can_view(svc, acting(), report):
        raise PermissionDenied(text("You may not open the report {name}.", "你无权查看报表“{name}”。", name=report.label))
    return report


# --- URLs ----------------------------------------------------------------------------------
def view_url(report: ReportDef, params: dict, drill: list, **extra) -> str:
    args = dict(params)
    if drill:
        args["d"] = drill_json(drill)
    args.update({k: v for k, v in extra.items() if v})
    return url_for("crmkit_reports.report_view", key=report.key, **args)


def records_url(report: ReportDef, params: dict, drill: list, column=...) -> str:
    args = dict(params, d=drill_json(drill))
    if column is not ...:
        args["c"] = json.dumps(column, ensure_ascii=False)
    return url_for("crmkit_reports.report_records", key=report.key, **args)


def row_url(result: ReportResult, row) -> str | None:
    if not row.cells:
        return None
    if row.drill is not None:
        return view_url(result.report, result.params, row.drill)
    return records_url(result.report, result.params, result.drill + [c.key for c in row.cells])


def cell_url(result: ReportResult, row, column_key) -> str | None:
    if not row.cells:
        return None
    return records_url(result.report, result.params, result.drill + [row.cells[0].key], column_key)


def render_context(report: ReportDef, result: ReportResult, locale: str, *, expand: bool = False) -> dict:
    svc = services()
    chart = None
    if report.output == "chart" and report.chart in CHART_JS_KINDS and result.rows and not expand:
        chart = chart_option(svc, result, locale, lambda r: row_url(result, r), lambda r, c: cell_url(result, r, c))
    formats = {m.name: m.format for m in report.measures}
    return {"report": report, "result": result, "chart": chart, "formats": formats, "expand": expand,
            "row_url": lambda r: row_url(result, r), "cell_url": lambda r, c: cell_url(result, r, c),
            "crumb_url": lambda d: view_url(report, result.params, d), "kpi_url": records_url(report, result.params, []),
            "pivot_value": lambda row, ck, name: result.pivot.get((tuple(c.key for c in row.cells), ck), {}).get(name)}


def chart_json(chart) -> Markup:
    """JSON for a <script type="application/json"> block: ``<`` escaped so no tag can close it early."""
    return Markup(json.dumps(chart, ensure_ascii=False, default=str).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


reports_blueprint.add_app_template_filter(chart_json, "chart_json")


def prompt_widgets(report: ReportDef, params: dict, locale: str) -> list[dict]:
    svc = services()
    catalog = svc.store.catalog()
    entity = catalog.entity(report.source)
    out = []
    for p in report.prompts:
        from ..meta.reports import SYSTEM_COLUMNS

        f = entity.field_map.get(p.field) or SYSTEM_COLUMNS[p.field]
        label = (p.label or f.label).get(locale)
        current = params.get(f"p_{p.name}", p.default or "")
        w = {"name": f"p_{p.name}", "label": label, "type": p.type, "value": current}
        if p.type == "date_range":
            w["options"] = [("all", translate("period_all", locale))] + [(x, translate(f"period_{x}", locale)) for x in PERIODS] + \
                           [("custom", translate("period_custom", locale))]
            w["from"] = params.get(f"p_{p.name}_from", "")
            w["to"] = params.get(f"p_{p.name}_to", "")
        elif f.type == "single_select":
            w["options"] = [("", translate("all_records", locale))] + [(o["value"], Label.of(o["label"], o["value"]).get(locale)) for o in f.opt("options", ())]
        elif f.type == "boolean":
            w["options"] = [("", translate("all_records", locale)), ("true", translate("yes", locale)), ("false", translate("no", locale))]
        elif f.type == "link":
            target = f.opt("target")
            if svc.policy.allows(acting(), catalog.entity(target), "read"):
                w["options"] = [("", translate("all_records", locale))] + [(str(i), t) for i, t in svc.queries.options(target, acting(), limit=100)]
        out.append(w)
    return out


# --- pages ---------------------------------------------------------------------------------
@reports_blueprint.route("/reports/")
def reports_index():
    svc, actor, locale = services(), acting(), current_locale()
    catalog = svc.store.catalog()
    groups: dict = {}
    for r in sorted(visible_reports(svc, actor), key=lambda r: r.label.get(locale)):
        title = translate("my_reports", locale) if r.owner is not None else (catalog.apps[r.app].title.get(locale) if r.app in catalog.apps else r.app)
        groups.setdefault(title, []).append(r)
    from ...builder.dashboards import may_design_dashboards
    from ...builder.reports import sources

    designer_url = url_for("crmkit_report_builder.designer") if sources(actor) else None
    dash_designer_url = url_for("crmkit_dashboard_builder.designer") if may_design_dashboards(actor) else None
    return render_template("crmkit/reports/index.html", groups=groups, dashboards=visible_dashboards(svc, actor), actor=actor,
                           designer_url=designer_url, dash_designer_url=dash_designer_url)


@reports_blueprint.route("/reports/<key>/")
def report_view(key):
    svc, actor, locale = services(), acting(), current_locale()
    report = report_of(key)
    params = prompt_params(request.args)
    drill = parse_drill(request.args.get("d"), report)
    expand = request.args.get("expand") == "1"
    error = None
    try:
        result = run_report(svc, actor, report, params, drill=drill, expand=expand, locale=locale)
    except BadQuery as exc:
        result, error = None, localize(exc.message if hasattr(exc, "message") else str(exc), locale)
    ctx = render_context(report, result, locale, expand=expand) if result is not None else {"report": report, "result": None, "chart": None}
    from ..workbench import WorkbenchService

    ctx.update(starred=actor.id is not None and WorkbenchService(svc.engine).is_favorite(actor.id, "report", report.key))
    from ...builder.reports import can_edit

    ctx.update(edit_url=url_for("crmkit_report_builder.edit", key=report.key) if can_edit(actor, report) else None)
    ctx.update(error=error, prompts=prompt_widgets(report, params, locale), params=params, drill=drill,
               can_export=svc.policy.allows(actor, svc.store.catalog().entity(report.source), "export"))
    status = 400 if error else 200
    if request.headers.get("HX-Request") and not request.headers.get("HX-History-Restore-Request"):
        return render_template("crmkit/reports/_region.html", **ctx), status
    return render_template("crmkit/reports/view.html", **ctx), status


@reports_blueprint.route("/reports/<key>/records")
def report_records(key):
    """The record list behind a cell: the list page with exactly the cell's filter, or a clear message."""
    svc, actor = services(), acting()
    report = report_of(key)
    params = prompt_params(request.args)
    drill = parse_drill(request.args.get("d"), report)
    column = ...
    if request.args.get("c") is not None:
        try:
            column = json.loads(request.args["c"])
        except ValueError:
            raise BadQuery(text("The drill-down path is not valid; start again from the top of the report.", "下钻路径无效，请从报表顶层重新开始。")) from None
    found = record_list_params(svc, actor, report, params, drill, column)
    if found is None:
        raise BadQuery(text("These rows cannot be shown as one list filter (an empty linked value); drill down by another group.",
                            "这些记录无法用一个列表筛选表示（关联值为空），请改用其他分组下钻。"))
    return redirect(url_for("crmkit_web.entity_list", entity_key=report.source, **found))


@reports_blueprint.route("/reports/<key>/export.<fmt>")
def report_export(key, fmt):
    if fmt not in ("xlsx", "csv"):
        abort(404)
    svc, actor, locale = services(), acting(), current_locale()
    report = report_of(key)
    params = prompt_params(request.args)
    body, n = export_report(svc, actor, report, params, fmt, locale)
    record_event_now(svc.engine, category="export", action=f"export_report_{fmt}", actor_id=actor.id, entity=report.source,
                     subject=report.key, changes={"report": report.key, "rows": n, "params": params}, ip=request.remote_addr)
    filename = f"{report.key}-{dt.date.today().isoformat()}.{fmt}"
    mimetype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" if fmt == "xlsx" else "text/csv"
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})


@reports_blueprint.route("/reports/<key>/export-job", methods=["POST"])
def report_export_job_submit(key):
    """Queue a large export as a ``report.export`` job and open its status page (progress, then the download)."""
    svc, actor = services(), acting()
    report = report_of(key)
    svc.policy.check(actor, svc.store.catalog().entity(report.source), "export")
    fmt = "csv" if request.form.get("format") == "csv" else "xlsx"
    job_id = svc.jobs.submit("report.export", {"report": report.key, "params": prompt_params(request.form), "format": fmt,
                                           "actor_id": actor.id, "locale": current_locale()}, actor=actor)
    return redirect(url_for("crmkit_jobs.job_detail", job_id=job_id))


@reports_blueprint.route("/reports/exports/<int:job_id>")
def report_export_download(job_id: int):
    """The file a finished ``report.export`` job wrote, for the user who asked for it (or an administrator)."""
    svc, actor = services(), acting()
    job = svc.jobs.get_for(job_id, actor)
    result = job.get("result") or {}
    folder = (Path(svc.settings.var_dir) / "exports").resolve()
    path = (folder / str(result.get("file", ""))).resolve()
    if job["kind"] != "report.export" or job["status"] != "succeeded" or path.parent != folder or not path.is_file():
        raise RecordNotFound(text("This export is not ready or no longer exists; start the export again.",
                                  "该导出尚未完成或已不存在，请重新导出。"))
    record_event_now(svc.engine, category="export", action="download", actor_id=actor.id,
                     changes={"job_id": job_id, "file": path.name, "rows": result.get("rows")})
    resp = send_file(path, as_attachment=True, download_name=path.name)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def dashboard_widgets(svc, actor, dash: DashboardDef, locale: str) -> list[dict]:
    """Every widget of the grid, each run through the query service with the viewer's own scope and field rights.
    A widget whose report the viewer may not open becomes an "unavailable" tile carrying no data."""
    widgets = []
    roles = role_names(svc, actor)
    catalog = svc.store.catalog()
    for w in dash.widgets:
        report = catalog.reports.get(w.report)
        if report is None or not can_view(svc, actor, report, roles):
            widgets.append({"widget": w, "report": None, "unavailable": True, "title": w.title.get(locale) if w.title else ""})
            continue
        entry = {"widget": w, "report": report, "title": (w.title or report.label).get(locale), "error": None, "unavailable": False}
        try:
            result = run_report(svc, actor, report, {}, locale=locale)
            entry.update(render_context(report, result, locale))
        except CrmkitError as exc:
            entry["error"] = localize(getattr(exc, "message", str(exc)), locale)
        widgets.append(entry)
    return widgets


@reports_blueprint.route("/dashboards/<key>/")
def dashboard_view(key):
    svc, actor, locale = services(), acting(), current_locale()
    dash = svc.store.catalog().dashboard(key)
    if not can_view_dashboard(svc, actor, dash):
        raise PermissionDenied(text("You may not open this dashboard.", "你无权查看此仪表板。"))
    widgets = dashboard_widgets(svc, actor, dash, locale)
    from ...builder.dashboards import may_design_dashboards
    from ..workbench import WorkbenchService

    starred = actor.id is not None and WorkbenchService(svc.engine).is_favorite(actor.id, "dashboard", dash.key)
    edit_url = url_for("crmkit_dashboard_builder.edit", key=dash.key) if may_design_dashboards(actor) else None
    return render_template("crmkit/reports/dashboard.html", dashboard=dash, widgets=widgets, starred=starred, edit_url=edit_url)
