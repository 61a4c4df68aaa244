"""A business calendar: working hours per weekday, public holidays and adjusted working days (调休) as data.

All arithmetic is in whole minutes over the calendar's local working intervals; inputs and outputs are aware
datetimes (any zone), so the SLA engine can be driven by a controllable clock in tests.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

DATA = Path(__file__).parent / "data"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DAYS = 3660  # a target that does not fit in ten years of calendar is a configuration error


def _t(s: str) -> dt.time:
    h, m = s.split(":")
    return dt.time(int(h), int(m))


@dataclass(frozen=True)
class BusinessCalendar:
    tz: ZoneInfo
    hours: dict[int, tuple[tuple[dt.time, dt.time], ...]]  # weekday (0 = Monday) → working intervals
    holidays: frozenset[dt.date]
    adjusted_working_days: frozenset[dt.date]  # weekend days worked instead (调休), with ``adjusted_hours``
    adjusted_hours: tuple[tuple[dt.time, dt.time], ...]

    @classmethod
    def from_dict(cls, data: dict) -> "BusinessCalendar":
        hours = {i: tuple((_t(a), _t(b)) for a, b in data["hours"].get(day, [])) for i, day in enumerate(WEEKDAYS)}
        for spans in hours.values():
            for a, b in spans:
                if not a < b:
                    raise ValueError(f"working interval {a}–{b} must end after it starts")
        holidays = data.get("holidays", [])
        if isinstance(holidays, dict):  # grouped by festival name
            holidays = [d for days in holidays.values() for d in days]
        adjusted = data.get("adjusted_day_hours", "mon")
        return cls(tz=ZoneInfo(data.get("timezone", "Asia/Shanghai")), hours=hours,
                   holidays=frozenset(dt.date.fromisoformat(d) for d in holidays),
                   adjusted_working_days=frozenset(dt.date.fromisoformat(d) for d in data.get("adjusted_working_days", [])),
                   adjusted_hours=hours[WEEKDAYS.index(adjusted)])

    def intervals(self, day: dt.date) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
        """The working intervals of ``day`` as aware local datetimes (empty on a holiday or a weekend)."""
        if day in self.adjusted_working_days:
            spans = self.adjusted_hours
        elif day in self.holidays:
            spans = ()
        else:
            spans = self.hours[day.weekday()]
        return tuple((dt.datetime.combine(day, a, self.tz), dt.datetime.combine(day, b, self.tz)) for a, b in spans)

    def is_working_day(self, day: dt.date) -> bool:
        return bool(self.intervals(day))

    def minutes_between(self, start: dt.datetime, end: dt.datetime) -> int:
        """Working minutes in [start, end) (0 when end is not after start)."""
        if end <= start:
            return 0
        start, end = start.astimezone(self.tz), end.astimezone(self.tz)
        total = dt.timedelta()
        day = start.date()
        while day <= end.date():
            for a, b in self.intervals(day):
                lo, hi = max(a, start), min(b, end)
                if hi > lo:
                    total += hi - lo
            day += dt.timedelta(days=1)
        return int(total.total_seconds() // 60)

    def add_minutes(self, start: dt.datetime, minutes: int) -> dt.datetime:
        """The moment when ``minutes`` working minutes have passed after ``start``."""
        if minutes < 0:
            raise ValueError("minutes must not be negative")
        start = start.astimezone(self.tz)
        left = dt.timedelta(minutes=minutes)
        day = start.date()
        for _ in range(MAX_DAYS):
            for a, b in self.intervals(day):
                lo = max(a, start)
                if b <= lo:
                    continue
                if lo + left <= b:
                    if left == dt.timedelta() and lo > start:
                        return lo
                    return lo + left
                left -= b - lo
            day += dt.timedelta(days=1)
        raise ValueError("the calendar has no working time for this target")


@lru_cache(maxsize=4)
def load_calendar(name: str = "calendar_cn_2026") -> BusinessCalendar:
    return BusinessCalendar.from_dict(json.loads((DATA / f"{name}.json").read_text("utf-8")))


def app_settings() -> dict:
    """The template's tunables (data/settings.json): lead pool days, SLA at-risk ratio, survey link lifetime."""
    return json.loads((DATA / "settings.json").read_text("utf-8"))
