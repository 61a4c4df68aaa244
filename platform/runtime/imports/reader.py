"""Read CSV and XLSX files as a stream of rows: ``open_table(path) -> TableSource``.

CSV: UTF-8 (with or without BOM), else GB18030 (a superset of GBK, what Chinese Excel saves); the delimiter is
sniffed from the header line. XLSX: openpyxl read-only mode, the first or a chosen sheet. Merged header cells are
read from the sheet's ``<mergeCells>`` (read-only mode does not expose them) and spread over the cells they cover;
a header merged across columns puts the row under it in the header too (a two-row header).

Row numbers are the spreadsheet's (the header is row 1), so an error report points at the row the user sees.
"""
from __future__ import annotations

import codecs
import csv
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import ValidationFailed
from ..i18n_text import text

SNIFF_BYTES = 1 << 20
MAX_COLUMNS = 500


@dataclass
class TableSource:
    path: Path
    kind: str  # "csv" | "xlsx"
    headers: list[str]
    header_rows: int = 1
    encoding: str | None = None
    delimiter: str = ","
    sheet: str | None = None
    sheets: list[str] = field(default_factory=list)

    def rows(self, start_after: int = 0) -> Iterator[tuple[int, list[Any]]]:
        """(row number, cells) for each non-empty data row after row ``start_after``."""
        it = self._csv_rows() if self.kind == "csv" else self._xlsx_rows()
        for number, cells in it:
            if number <= max(start_after, self.header_rows):
                continue
            if all(c is None or (isinstance(c, str) and c.strip() == "") for c in cells):
                continue
            yield number, cells

    def count(self) -> int:
        n = 0
        for _ in self.rows():
            n += 1
        return n

    def _csv_rows(self):
        with open(self.path, newline="", encoding=self.encoding, errors="strict") as fh:
            reader = csv.reader(fh, delimiter=self.delimiter)
            # csv.reader.line_num counts physical lines; a record number is what a spreadsheet shows.
            for number, cells in enumerate(reader, start=1):
                yield number, cells

    def _xlsx_rows(self):
        from openpyxl import load_workbook

        wb = load_workbook(self.path, read_only=True, data_only=True)
        try:
            ws = wb[self.sheet]
            for number, cells in enumerate(ws.iter_rows(values_only=True), start=1):
                yield number, list(cells)
        finally:
            wb.close()


def open_table(path: str | Path, *, sheet: str | None = None, file_name: str | None = None) -> TableSource:
    path = Path(path)
    name = (file_name or path.name).lower()
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if name.endswith((".xlsx", ".xlsm")) or magic == b"PK\x03\x04":
        return _open_xlsx(path, sheet)
    if name.endswith(".xls"):
        raise ValidationFailed({"file": [text("Old .xls files cannot be read; save the file as .xlsx or .csv in Excel and upload it again.",
                                              "无法读取旧版 .xls 文件，请在 Excel 中另存为 .xlsx 或 .csv 后重新上传。")]})
    return _open_csv(path)


def detect_encoding(path: Path) -> str:
    """The BOM's encoding, else UTF-8, else GB18030; the whole file must decode, so a wrong guess never fails mid-import."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]
    else:
        candidates = ["utf-8", "gb18030"]
    for encoding in candidates:
        dec = codecs.getincrementaldecoder(encoding)()
        try:
            with open(path, "rb") as fh:
                while chunk := fh.read(SNIFF_BYTES):
                    dec.decode(chunk)
            dec.decode(b"", final=True)
            return encoding
        except (UnicodeDecodeError, UnicodeError):
            continue
    raise ValidationFailed({"file": [text("The file's text encoding was not recognised; save it as CSV UTF-8 and upload it again.",
                                          "无法识别文件的文字编码，请另存为“CSV UTF-8”格式后重新上传。")]})


def _open_csv(path: Path) -> TableSource:
    encoding = detect_encoding(path)
    with open(path, newline="", encoding=encoding) as fh:
        first = fh.readline()
    counts = {d: first.count(d) for d in (",", "\t", ";", "|")}
    delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","
    src = TableSource(path=path, kind="csv", headers=[], encoding=encoding, delimiter=delimiter)
    for _, cells in src._csv_rows():
        src.headers = unique_headers([_cell_text(c) for c in cells])
        break
    if not src.headers:
        raise ValidationFailed({"file": [text("The file is empty: the first row should hold the column names.", "文件为空：第一行应为列名。")]})
    return src


def _open_xlsx(path: Path, sheet: str | None) -> TableSource:
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception:  # noqa: BLE001 - openpyxl raises many types for a broken file
        raise ValidationFailed({"file": [text("The file is not a readable .xlsx workbook.", "该文件不是可读取的 .xlsx 工作簿。")]}) from None
    try:
        names = wb.sheetnames
        if sheet is None:
            sheet = names[0]
        elif sheet not in names:
            raise ValidationFailed({"sheet": [text("There is no sheet named '{name}' (sheets: {all}).", "没有名为“{name}”的工作表（现有：{all}）。",
                                                   name=sheet, all=", ".join(names))]})
        ws = wb[sheet]
        merges = _merged_ranges(wb, ws)
        depth = 1
        for (r1, c1, r2, c2) in merges:
            if r1 == 1:
                depth = max(depth, r2 if r2 > 1 else 2) if (r2 > 1 or c2 > c1) else depth
        depth = min(depth, 5)
        head: list[list[Any]] = []
        for cells in ws.iter_rows(min_row=1, max_row=depth, values_only=True):
            head.append(list(cells)[:MAX_COLUMNS])
    finally:
        wb.close()
    if not head or all(c is None for c in head[0]):
        raise ValidationFailed({"file": [text("The sheet is empty: the first row should hold the column names.", "工作表为空：第一行应为列名。")]})
    width = max(len(r) for r in head)
    grid = [[_cell_text(r[c]) if c < len(r) else "" for c in range(width)] for r in head]
    for (r1, c1, r2, c2) in merges:
        if r1 > depth:
            continue
        value = grid[r1 - 1][c1 - 1] if c1 - 1 < width else ""
        for r in range(r1, min(r2, depth) + 1):
            for c in range(c1, min(c2, width) + 1):
                grid[r - 1][c - 1] = value
    headers = []
    for c in range(width):
        parts = [grid[r][c] for r in range(depth) if grid[r][c]]
        parts = list(dict.fromkeys(parts))
        headers.append(parts[-1] if parts else "")
    # The same lower cell under two groups ("手机" under 本人 and 紧急联系人): name it with its group.
    for c, h in enumerate(headers):
        if h and headers.count(h) > 1 and depth > 1:
            parts = list(dict.fromkeys(grid[r][c] for r in range(depth) if grid[r][c]))
            headers[c] = "/".join(parts)
    while headers and headers[-1] == "":
        headers.pop()
    return TableSource(path=path, kind="xlsx", headers=unique_headers(headers), header_rows=depth, sheet=sheet, sheets=names)


MERGE_RE = re.compile(rb'<(?:\w+:)?mergeCell\s+ref="([A-Z]+)(\d+)(?::([A-Z]+)(\d+))?"')


def _merged_ranges(wb, ws) -> list[tuple[int, int, int, int]]:
    """(min_row, min_col, max_row, max_col) of every merged range, scanned from the sheet XML as a stream."""
    from openpyxl.utils import column_index_from_string

    archive = getattr(wb, "_archive", None)
    member = getattr(ws, "_worksheet_path", None)
    if not isinstance(archive, zipfile.ZipFile) or not member:
        return []
    out, tail = [], b""
    with archive.open(member.lstrip("/")) as fh:
        while chunk := fh.read(1 << 20):
            buf = tail + chunk
            for m in MERGE_RE.finditer(buf):
                a, r1, b, r2 = m.groups()
                c1 = column_index_from_string(a.decode())
                c2 = column_index_from_string(b.decode()) if b else c1
                out.append((int(r1), c1, int(r2 or r1), c2))
            tail = buf[-200:]
            # a match inside the overlap is found twice; dedupe below
    return sorted(set(out))


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().replace("\n", " ")


def unique_headers(headers: list[str]) -> list[str]:
    """Blank headers become "Column N"; repeated ones get " (2)", " (3)"."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, h in enumerate(headers[:MAX_COLUMNS], start=1):
        h = h.lstrip("\ufeff").strip() or f"Column {i}"
        n = seen.get(h, 0) + 1
        seen[h] = n
        out.append(h if n == 1 else f"{h} ({n})")
    return out


def cells_as_text(cells: list[Any], width: int) -> list[str]:
    """The original row as text (for error reports), padded or cut to the header width."""
    out = []
    for i in range(width):
        v = cells[i] if i < len(cells) else None
        if v is None:
            out.append("")
        elif hasattr(v, "isoformat"):
            if hasattr(v, "hour") and hasattr(v, "year"):  # a datetime; Excel dates are datetimes at midnight
                out.append(v.date().isoformat() if (v.hour, v.minute, v.second, v.microsecond) == (0, 0, 0, 0) else v.isoformat(sep=" "))
            else:
                out.append(v.isoformat())
        elif isinstance(v, float) and v.is_integer():
            out.append(str(int(v)))
        else:
            out.append(str(v))
    return out


__all__ = ["TableSource", "open_table", "detect_encoding", "unique_headers", "cells_as_text"]
