"""Report exports: every group level expanded into one table, written as XLSX (openpyxl write-only) or CSV.

Cells go through ``crmkit.runtime.spreadsheet`` (formula neutralising, long digit strings as text).
``report_export_job`` is the ``report.export`` job handler for large exports.
"""
from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

from ..actor import Actor
from ..spreadsheet import csv_value, xlsx_value
from .runner import ReportResult, run_report


def table_of(result: ReportResult, locale: str) -> tuple[list[str], list[list]]:
    """Header and rows: group columns, then measures (pivot: one measure column per column key and measure)."""
    header = list(result.group_labels)
    rows = []
    if result.columns:
        for c in result.columns:
            header += [f"{c.label} · {lab}" if len(result.measures) > 1 else c.label for lab in result.measure_labels]
        header += [f"{'合计' if locale.startswith('zh') else 'Total'} · {lab}" for lab in result.measure_labels]
        for r in result.rows:
            rk = tuple(c.key for c in r.cells)
            line = [c.label for c in r.cells]
            for c in result.columns:
                vals = result.pivot.get((rk, c.key), {})
                line += [number(vals.get(m.name)) for m in result.measures]
            line += [number(r.values.get(m.name)) for m in result.measures]
            rows.append(line)
    else:
        header += result.measure_labels
        for r in result.rows:
            rows.append([c.label for c in r.cells] + [number(r.values.get(m.name)) for m in result.measures])
    if result.groups:
        total = ["合计" if locale.startswith("zh") else "Total"] + [""] * (len(result.groups) - 1)
        if result.columns:
            total += [""] * (len(result.columns) * len(result.measures))
        rows.append(total + [number(result.totals.get(m.name)) for m in result.measures])
    return header, rows


def number(v):
    if v is None:
        return None
    try:
        return round(float(v), 4) if not isinstance(v, int) else v
    except (TypeError, ValueError):
        return v


def to_csv(header: list[str], rows: list[list]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow([csv_value(h) for h in header])
    for r in rows:
        w.writerow([csv_value(v) for v in r])
    return ("\ufeff" + out.getvalue()).encode("utf-8")  # BOM: Excel opens UTF-8 Chinese text correctly


def to_xlsx(header: list[str], rows: list[list], title: str = "Report") -> bytes:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title=(title or "Report")[:31].translate({ord(c): " " for c in "[]:*?/\\"}))
    bold = Font(bold=True)

    def cells(values, font=None):
        out = []
        for v in values:
            value, fmt = xlsx_value(v)
            c = WriteOnlyCell(ws, value=value)
            if fmt:
                c.number_format = fmt
            if font:
                c.font = font
            out.append(c)
        return out

    ws.append(cells(header, bold))
    for r in rows:
        ws.append(cells(r))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def export_report(services, actor: Actor, report, params: dict, fmt: str, locale: str) -> tuple[bytes, int]:
    services.policy.check(actor, services.store.catalog().entity(report.source), "export")
    result = run_report(services, actor, report, params, expand=True, locale=locale)
    header, rows = table_of(result, locale)
    body = to_xlsx(header, rows, report.label.get(locale)) if fmt == "xlsx" else to_csv(header, rows)
    return body, len(result.rows)


def report_export_job(ctx, payload: dict) -> dict:
    """Job handler ``report.export``: payload {report, params, format, actor_id, locale}; writes the file under
    ``<var_dir>/exports`` and returns its name and row count. The actor is re-resolved, so current rights apply."""
    from ..org.grants import resolve_grants

    services = ctx.services
    with services.engine.connect() as conn:
        g = resolve_grants(conn, payload["actor_id"])
    if g is None or not g.active:
        raise PermissionError("the user who asked for this export no longer exists or is inactive")
    actor = Actor(id=g.user_id, username=str(g.user_id), is_admin="Admin" in g.role_names, permissions=g.permissions,
                  org_unit_id=g.org_unit_id, locale=payload.get("locale", "zh"), role_ids=g.role_ids)
    report = services.store.catalog().report(payload["report"])
    fmt = "xlsx" if payload.get("format", "xlsx") == "xlsx" else "csv"
    ctx.progress(0, 1, "running")
    body, n = export_report(services, actor, report, payload.get("params") or {}, fmt, actor.locale)
    folder = Path(services.settings.var_dir) / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"report-{report.name}-{uuid.uuid4().hex[:12]}.{fmt}"
    (folder / name).write_bytes(body)
    ctx.progress(1, 1, "written")
    # ``download`` is the path the job page links to (reports.views.report_export_download checks who may fetch it).
    return {"file": name, "rows": n, "bytes": len(body), "download": f"/reports/exports/{ctx.job_id}"}


def register_report_jobs(registry) -> None:
    """Integration point with ``crmkit.runtime.jobs``: call once where the job registry is built."""
    registry.register("report.export", report_export_job)
