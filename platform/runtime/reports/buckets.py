"""Date bucket keys (``2026-03-02`` week start, ``2026-03``, ``2026-Q1``, ``2026``) ↔ date ranges and display text."""
from __future__ import annotations

import datetime as dt


def bucket_range(bucket: str, key: str) -> tuple[dt.date, dt.date]:
    """The local dates a bucket key covers: inclusive start, exclusive end."""
    if bucket in ("day", "week"):
        start = dt.date.fromisoformat(key)
        return start, start + dt.timedelta(days=1 if bucket == "day" else 7)
    if bucket == "month":
        y, m = map(int, key.split("-"))
        start = dt.date(y, m, 1)
        return start, dt.date(y + (m == 12), m % 12 + 1, 1)
    if bucket == "quarter":
        y, q = map(int, key.split("-Q"))
        start = dt.date(y, 3 * q - 2, 1)
        return start, (dt.date(y + 1, 1, 1) if q == 4 else dt.date(y, 3 * q + 1, 1))
    if bucket == "year":
        y = int(key)
        return dt.date(y, 1, 1), dt.date(y + 1, 1, 1)
    raise ValueError(bucket)


def bucket_of(bucket: str, d: dt.date) -> str:
    """The key a local date falls in (the Python twin of the SQL expression; tests and ranges use it)."""
    if bucket == "day":
        return d.isoformat()
    if bucket == "week":
        return (d - dt.timedelta(days=d.weekday())).isoformat()
    if bucket == "month":
        return f"{d.year:04d}-{d.month:02d}"
    if bucket == "quarter":
        return f"{d.year:04d}-Q{(d.month - 1) // 3 + 1}"
    return f"{d.year:04d}"


def bucket_label(bucket: str, key: str, locale: str) -> str:
    zh = (locale or "").startswith("zh")
    try:
        if bucket == "day":
            d = dt.date.fromisoformat(key)
            return f"{d.year}年{d.month}月{d.day}日" if zh else d.isoformat()
        if bucket == "week":
            d = dt.date.fromisoformat(key)
            return f"{d.isoformat()} 当周" if zh else f"week of {d.isoformat()}"
        if bucket == "month":
            y, m = map(int, key.split("-"))
            return f"{y}年{m}月" if zh else dt.date(y, m, 1).strftime("%b %Y")
        if bucket == "quarter":
            year, quarter = key.split("-Q")
            return f"{year}年第{quarter}季度" if zh else f"Q{quarter} {year}"
        return f"{key}年" if zh else str(key)
    except (ValueError, AttributeError):
        return str(key)
