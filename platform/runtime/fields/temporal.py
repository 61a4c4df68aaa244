"""Date and timezone-aware datetime, with relative periods such as "this month"."""
from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from marshmallow import ValidationError, fields as mf
from sqlalchemy import Date, DateTime, and_
from sqlalchemy.types import TypeDecorator

from ..errors import BadQuery
from ..i18n_text import Text, text
from ..meta.model import Label
from .base import FieldType
from .messages import DATE_MESSAGES, DATETIME_MESSAGES

DATE_OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "between", "in_range", "is_empty", "is_not_empty")

PERIODS = (
    "today", "yesterday", "tomorrow", "this_week", "last_week", "this_month", "last_month", "next_month",
    "this_quarter", "this_year", "last_year", "last_7_days", "last_30_days", "next_7_days", "next_30_days",
)


def period_bounds(period: str, today: dt.date) -> tuple[dt.date, dt.date]:
    """Inclusive start, exclusive end, in local dates."""
    d = dt.timedelta
    if period == "today":
        return today, today + d(1)
    if period == "yesterday":
        return today - d(1), today
    if period == "tomorrow":
        return today + d(1), today + d(2)
    if period == "this_week":
        start = today - d(today.weekday())
        return start, start + d(7)
    if period == "last_week":
        start = today - d(today.weekday() + 7)
        return start, start + d(7)
    if period in ("this_month", "last_month", "next_month"):
        first = today.replace(day=1)
        if period == "last_month":
            first = (first - d(1)).replace(day=1)
        elif period == "next_month":
            first = (first + d(32)).replace(day=1)
        nxt = (first + d(32)).replace(day=1)
        return first, nxt
    if period == "this_quarter":
        q = (today.month - 1) // 3
        start = dt.date(today.year, q * 3 + 1, 1)
        end = dt.date(today.year + (1 if q == 3 else 0), 1 if q == 3 else q * 3 + 4, 1)
        return start, end
    if period == "this_year":
        return dt.date(today.year, 1, 1), dt.date(today.year + 1, 1, 1)
    if period == "last_year":
        return dt.date(today.year - 1, 1, 1), dt.date(today.year, 1, 1)
    if period == "last_7_days":
        return today - d(6), today + d(1)
    if period == "last_30_days":
        return today - d(29), today + d(1)
    if period == "next_7_days":
        return today, today + d(7)
    if period == "next_30_days":
        return today, today + d(30)
    raise BadQuery(text("Unknown period '{period}'; use one of: {allowed}.", "没有“{period}”这个时间范围，可用的有：{allowed}。",
                        period=period, allowed=Text(", ".join(PERIODS), "、".join(PERIODS))))


class UTCDateTime(TypeDecorator):
    """Aware datetimes stored in UTC on every database; SQLite keeps them naive-in-UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a timezone-aware column")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


class LenientDate(mf.Date):
    default_error_messages = {**DATE_MESSAGES, "invalid": text("Not a valid date; use YYYY-MM-DD, e.g. 2024-03-15.",
                                                                "请输入有效日期，格式为 YYYY-MM-DD，如 2024-03-15。")}
    FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y%m%d", "%Y年%m月%d日")

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            s = value.strip()
            if s == "":
                return None
            if len(s) == 10 and s[4] == "-" and s[7] == "-" and s[:4].isdigit() and s[5:7].isdigit() and s[8:].isdigit():
                try:  # the common ISO form without four strptime attempts (what "%Y-%m-%d" accepts in this shape)
                    return dt.date.fromisoformat(s)
                except ValueError:
                    pass  # e.g. 2024-02-30: the formats below refuse it with the usual message
            elif "年" in s:
                try:
                    return dt.datetime.strptime(s, "%Y年%m月%d日").date()
                except ValueError:
                    pass
            for fmt in self.FORMATS:
                try:
                    return dt.datetime.strptime(s, fmt).date()
                except ValueError:
                    continue
        raise self.make_error("invalid")


class DateType(FieldType):
    name = "date"
    label = Label("日期", "Date")
    widget = "date"
    operators = DATE_OPERATORS
    config_properties = {"min": {"type": "string", "format": "date"}, "max": {"type": "string", "format": "date"}}

    def sql_type(self, f):
        return Date()

    def marshmallow_field(self, f):
        lo, hi = f.opt("min"), f.opt("max")

        def check(v):
            if v is None:
                return
            if lo and v < dt.date.fromisoformat(lo):
                raise ValidationError(text("Must be on or after {date}.", "不能早于 {date}。", date=lo))
            if hi and v > dt.date.fromisoformat(hi):
                raise ValidationError(text("Must be on or before {date}.", "不能晚于 {date}。", date=hi))

        return LenientDate(allow_none=True, validate=check)

    def json_schema(self, f):
        return {"type": ["string", "null"], "format": "date"}

    def check_definition(self, f, entity_key, catalog_entities):
        lo, hi = f.opt("min"), f.opt("max")
        try:
            if lo and hi and dt.date.fromisoformat(lo) > dt.date.fromisoformat(hi):
                return [f"min ({lo}) is after max ({hi}); no date could be valid"]
        except ValueError:
            pass  # the meta-schema reports malformed dates
        return []

    def filter_clause(self, f, col, op, value, ctx):
        if op == "in_range":
            start, end = period_bounds(str(value), ctx.now.astimezone(ZoneInfo(ctx.timezone)).date())
            return and_(col >= start, col < end)
        return super().filter_clause(f, col, op, value, ctx)


LOOSE_DATETIME = re.compile(
    r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?"
    r"(?:(?:\s+|T)(\d{1,2})[:：](\d{2})(?:[:：](\d{2})(\.\d{1,6})?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_loose_datetime(s: str) -> dt.datetime | None:
    """ISO 8601, or what spreadsheets hold: 2024/3/5 9:30, 2024年3月5日 09:30. None when unreadable."""
    m = LOOSE_DATETIME.match(s)
    if m is None:
        return None
    y, mo, d, h, mi, sec, frac, tz = m.groups()
    iso = f"{y}-{int(mo):02d}-{int(d):02d}T{int(h or 0):02d}:{mi or '00'}:{sec or '00'}{frac or ''}"
    if tz:
        iso += "+00:00" if tz == "Z" else (tz if ":" in tz else f"{tz[:3]}:{tz[3:]}")
    try:
        return dt.datetime.fromisoformat(iso)
    except ValueError:
        return None


class LocalAwareDateTime(mf.DateTime):
    """ISO 8601 input; a value without an offset is read in the configured timezone."""

    default_error_messages = {**DATETIME_MESSAGES, "invalid": text("Not a valid date and time; use YYYY-MM-DD HH:MM, e.g. 2024-03-15 14:30.",
                                                                    "请输入有效的日期时间，格式为 YYYY-MM-DD HH:MM，如 2024-03-15 14:30。")}

    def __init__(self, timezone: str, **kw):
        super().__init__(**kw)
        self.tz = ZoneInfo(timezone)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, dt.datetime):
            parsed = value
        elif isinstance(value, str):
            s = value.strip()
            if s == "":
                return None
            parsed = parse_loose_datetime(s)
            if parsed is None:
                raise self.make_error("invalid")
        else:
            raise self.make_error("invalid")
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self.tz)
        try:
            return parsed.astimezone(dt.timezone.utc)
        except OverflowError:
            raise ValidationError(text("The date and time is out of range.", "日期时间超出可用范围。")) from None


class DateTimeType(FieldType):
    name = "datetime"
    label = Label("日期时间", "Date & time")
    widget = "datetime"
    operators = DATE_OPERATORS

    def __init__(self, timezone: str = "Asia/Shanghai"):
        self.timezone = timezone

    def sql_type(self, f):
        return UTCDateTime()

    def marshmallow_field(self, f):
        return LocalAwareDateTime(self.timezone, allow_none=True)

    def json_schema(self, f):
        return {"type": ["string", "null"], "format": "date-time"}

    def display(self, f, value, locale):
        if value is None:
            return ""
        return value.astimezone(ZoneInfo(self.timezone)).strftime("%Y-%m-%d %H:%M")

    def filter_clause(self, f, col, op, value, ctx):
        if op == "in_range":
            tz = ZoneInfo(ctx.timezone)
            start, end = period_bounds(str(value), ctx.now.astimezone(tz).date())
            to_utc = lambda d: dt.datetime.combine(d, dt.time(), tz).astimezone(dt.timezone.utc)
            return and_(col >= to_utc(start), col < to_utc(end))
        return super().filter_clause(f, col, op, value, ctx)
