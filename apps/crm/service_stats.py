"""Median and p90 of first-response and resolution times.

The report engine has count/sum/avg/min/max but no percentiles (SQLite has no percentile function, and a
window-function emulation would not fit the engine's one grouped statement). So the ticket stores each duration
as an integer (``first_response_minutes``, ``resolution_minutes``, business minutes without pauses), and the
percentiles come from the engine's own ``count`` grouped by that value: a frequency table read through
``QueryService.aggregate``, under the caller's row scope and field rules like any report. Nearest-rank
definition: the p-th percentile is the smallest value whose cumulative count reaches ``ceil(p/100 × n)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from crmkit.runtime.query.aggregate import GroupSpec, MeasureSpec

TICKET = "crm_service.ticket"
DURATIONS = ("first_response_minutes", "resolution_minutes")


@dataclass(frozen=True)
class Percentiles:
    field: str
    count: int
    median: int | None
    p90: int | None
    exact: bool  # False when the value table hit the engine's row cap (more than 5000 distinct values)


def nearest_rank(freq: list[tuple[int, int]], p: float) -> int | None:
    """``freq``: (value, count) pairs sorted by value."""
    n = sum(c for _, c in freq)
    if n == 0:
        return None
    rank, seen = max(1, math.ceil(p / 100 * n)), 0
    for value, c in freq:
        seen += c
        if seen >= rank:
            return value
    return freq[-1][0]


def percentiles(services, actor, field: str, *, filter=None) -> Percentiles:
    if field not in DURATIONS:
        raise ValueError(f"percentiles are kept for {', '.join(DURATIONS)}")
    flt = {"field": field, "op": "is_not_empty"}
    result = services.queries.aggregate(TICKET, actor, groups=[GroupSpec(field)], measures=[MeasureSpec("n", "count")],
                                        filter={"and": [flt, filter]} if filter else flt)
    freq = sorted((int(r["keys"][0]), int(r["values"]["n"])) for r in result.rows if r["keys"][0] is not None)
    return Percentiles(field, sum(c for _, c in freq), nearest_rank(freq, 50), nearest_rank(freq, 90), not result.truncated)


def service_times(services, actor, *, filter=None) -> dict[str, Percentiles]:
    return {f: percentiles(services, actor, f, filter=filter) for f in DURATIONS}
