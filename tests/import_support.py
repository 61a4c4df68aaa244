"""Helpers for the import tests: member spreadsheets in CSV (any encoding) and XLSX, and table snapshots."""
from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

from sqlalchemy import select

HEADERS = ["姓名", "手机号", "邮箱", "入会日期", "卡状态", "累计消费", "备注"]


def member_rows(n: int, *, start: int = 0) -> list[list[str]]:
    return [[f"会员{i:05d}", f"139{i:08d}", f"m{i}@example.com", "2024/3/5" if i % 2 else "2024-03-05", "正常" if i % 3 else "挂失",
             f"{i}.50", f"备注 {i}"] for i in range(start, start + n)]


def write_csv(path: Path, rows: list[list], *, headers=HEADERS, encoding: str = "utf-8") -> Path:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(headers)
    w.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def members(services) -> dict[str, dict]:
    """mobile → row (live records only)."""
    table = services.records.table_cache.tables(services.store.catalog())["membership.member"]
    with services.engine.connect() as conn:
        rows = conn.execute(select(table).where(table.c.deleted_at.is_(None))).mappings().all()
    return {r["mobile"]: dict(r) for r in rows}


def as_date(s: str) -> dt.date:
    return dt.date.fromisoformat(s.replace("/", "-").replace("-3-5", "-03-05"))
