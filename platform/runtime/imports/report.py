"""The error report of an import: the original rows that were not imported, plus an error column.

The columns are the file's own headers in the file's order, so the report can be fixed in Excel and uploaded
again with the same mapping. Cells are neutralised like every export (a leading = + - @ gets an apostrophe).
"""
from __future__ import annotations

import csv
import io
from typing import Iterator

from sqlalchemy import Engine, select

from ..spreadsheet import neutralise
from .reader import open_table
from .tables import import_error, import_run

ERROR_HEADER = {"zh": "错误信息", "en": "Errors"}


def report_rows(engine: Engine, run_id: int, locale: str = "zh", *, kinds=("error", "skip")) -> Iterator[list[str]]:
    """Header row, then one row per problem row (original cells + messages)."""
    with engine.connect() as conn:
        run = conn.execute(select(import_run).where(import_run.c.id == run_id)).mappings().one()
    lang = "zh" if (locale or "").startswith("zh") else "en"
    try:
        headers = open_table(run["file_path"], sheet=run["sheet"], file_name=run["file_name"]).headers
    except Exception:  # noqa: BLE001 - the upload may be gone; the stored cells still make a report
        headers = None
    first = True
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=1000).execute(
            select(import_error).where(import_error.c.run_id == run_id, import_error.c.kind.in_(kinds)).order_by(import_error.c.row_number))
        for row in result.mappings():
            cells = list(row["cells"])
            if first:
                width = len(headers) if headers else len(cells)
                yield [*(headers or [f"Column {i + 1}" for i in range(width)]), ERROR_HEADER[lang]]
                first = False
            msgs = "; ".join((f"{m['column']}: " if m.get("column") else "") + m["message"][lang] for m in row["messages"])
            yield [*(neutralise(c) for c in cells), f"[{row['row_number']}] {msgs}"]
    if first:
        yield [*(headers or []), ERROR_HEADER[lang]]


def report_csv(engine: Engine, run_id: int, locale: str = "zh") -> Iterator[str]:
    """UTF-8 with BOM (Excel opens Chinese text correctly), streamed."""
    buf = io.StringIO()
    w = csv.writer(buf)
    yield "\ufeff"
    for row in report_rows(engine, run_id, locale):
        w.writerow(row)
        if buf.tell() > 1 << 16:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def report_xlsx(engine: Engine, run_id: int, locale: str = "zh") -> bytes:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("errors")
    for row in report_rows(engine, run_id, locale):
        ws.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
