"""CSV export of a list view: its current filters, search, sort and visible columns.

Rows come from the query service page by page (so row scopes, hidden fields and masking
apply exactly as on the page), cells that a spreadsheet would run as a formula get a
leading apostrophe, and every export is an ``export`` audit event.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import tempfile
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, redirect, request, url_for
from flask_login import current_user

from ..audit import record_event_now
from ..errors import PermissionDenied
from ..spreadsheet import neutralise
from .actors import current_actor
from .display import field_def, field_label
from .entity_views import ListState, entity_of
from .filters_ui import chosen_filter, filter_tree
from .i18n import current_locale

export_blueprint = Blueprint("crmkit_export", __name__)

PAGE = 200
MAX_ROWS = 50_000


def cell_text(catalog, entity, name: str, row: dict, locale: str, timezone: str) -> str:
    value = row.get(name)
    if value is None or value == "" or value == []:
        return ""
    label = (row.get("_labels") or {}).get(name)
    if label is not None:
        return str(label)
    if isinstance(value, dt.datetime):
        return value.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")
    f = field_def(catalog, entity, name)
    if f is None:
        return str(value)
    return catalog.type_of(f).display_text(f, value, locale)


class ExportJob:
    """One export of a list view: who, what, and the rows (page by page through the query service)."""

    def __init__(self, entity_key: str):
        actor = current_actor()
        if actor is None:
            raise PermissionDenied("Log in first.")
        services = current_app.extensions["crmkit"]
        entity = entity_of(entity_key)
        services.policy.check(actor, entity, "read")
        services.policy.check(actor, entity, "export")
        self.services, self.actor, self.entity = services, actor, entity
        self.catalog = services.store.catalog()
        self.locale = current_locale()
        view = self.catalog.view(entity)
        self.state = ListState.from_args(request.args)
        readable = services.policy.readable_fields(actor, entity)
        self.columns = [c for c in view.columns if c in readable or c in ("created_at", "updated_at")]
        saved_tree, saved_sort = chosen_filter(view, self.state.saved or None, actor, services.saved_filters)
        self.tree = filter_tree(saved_tree, self.state.conditions, self.state.match)
        self.sort = self.state.sort or saved_sort
        self.count = 0

    def header(self) -> list[str]:
        return [neutralise(field_label(self.catalog, self.entity, c, self.locale)) for c in self.columns]

    def rows(self):
        cursor = None
        while self.count < MAX_ROWS:
            page = self.services.queries.list(self.entity.key, self.actor, filter=self.tree, sort=self.sort or None, search=self.state.q or None,
                                              cursor=cursor, limit=PAGE, count="none")
            for r in page.rows:
                yield [neutralise(cell_text(self.catalog, self.entity, c, r, self.locale, self.services.settings.timezone)) for c in self.columns]
            self.count += len(page.rows)
            cursor = page.next_cursor
            if not cursor:
                break

    def audit(self, action: str) -> None:
        record_event_now(self.services.engine, category="export", action=action, actor_id=self.actor.id, entity=self.entity.key,
                         subject=f"{self.count} rows", changes={"rows": self.count, "columns": self.columns, "filter": self.tree,
                                                                "search": self.state.q or None, "sort": self.sort or None},
                         ip=request.remote_addr)

    def filename(self, ext: str) -> str:
        return f"{self.entity.key}-{dt.date.today().isoformat()}.{ext}"


def _login_redirect():
    return redirect(url_for(current_app.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.full_path))


@export_blueprint.route("/e/<entity_key>/export.csv")
def export_csv(entity_key: str):
    if not current_user.is_authenticated:
        return _login_redirect()
    job = ExportJob(entity_key)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(job.header())
    for row in job.rows():
        writer.writerow(row)
    job.audit("export_csv")
    body = "\ufeff" + out.getvalue()  # BOM: Excel opens UTF-8 (Chinese text) correctly
    return Response(body, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{job.filename("csv")}"',
                                                        "Cache-Control": "no-store"})


XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@export_blueprint.route("/e/<entity_key>/export.xlsx")
def export_xlsx(entity_key: str):
    """The same rows as the CSV export, as a workbook. openpyxl's write-only mode keeps memory flat (rows go to a
    temporary file as they are written); every cell is a text cell, so numbers such as mobiles and ID numbers keep
    their digits and nothing is ever evaluated as a formula."""
    if not current_user.is_authenticated:
        return _login_redirect()
    job = ExportJob(entity_key)
    tmp = tempfile.TemporaryFile()
    write_xlsx(tmp, job.header(), job.rows(), title=str(job.entity.plural_label.get(job.locale))[:31] or "export")
    job.audit("export_xlsx")
    tmp.seek(0)

    def stream():
        try:
            while chunk := tmp.read(1 << 16):
                yield chunk
        finally:
            tmp.close()

    return Response(stream(), mimetype=XLSX_MIME, headers={"Content-Disposition": f'attachment; filename="{job.filename("xlsx")}"',
                                                           "Cache-Control": "no-store"})


def write_xlsx(fh, header: list[str], rows, *, title: str = "export") -> None:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(_sheet_title(title))
    bold = Font(bold=True)

    def cells(values, font=None):
        out = []
        for v in values:
            c = WriteOnlyCell(ws, value=_xml_safe(v))
            c.data_type = "s"  # text, never a formula or a number
            if font is not None:
                c.font = font
            out.append(c)
        return out

    ws.append(cells(header, bold))
    for row in rows:
        ws.append(cells(row))
    wb.save(fh)


def _sheet_title(title: str) -> str:
    return "".join(ch for ch in title if ch not in "[]:*?/\\")[:31] or "export"


def _xml_safe(value: str) -> str:
    """XML 1.0 cannot hold most control characters; Excel would refuse the file."""
    return "".join(ch for ch in value if ch in "\t\n\r" or ord(ch) >= 32)
