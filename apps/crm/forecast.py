"""Forecast: target vs actual per salesperson and month, read through the query service's aggregations.

The weighted pipeline (amount × stage probability, stored as ``weighted_amount``) by owner, team and month is
plain report metadata (``sales/reports/forecast_*.json``); target vs actual joins two entities — monthly
``crm_sales.sales_target`` rows and won opportunities by their close month — which one report cannot, so it is
two aggregations merged here, each under the caller's row scope.
"""
from __future__ import annotations

import datetime as dt
import decimal

from crmkit.runtime.i18n_text import text

from .sales import _date

ZERO = decimal.Decimal("0.00")


def target_validator(write) -> dict:
    """Targets are monthly: the period is stored as the month's first day, one target per salesperson and month."""
    from sqlalchemy import select

    period = _date(write.get("period"))
    if period is None:
        return {}
    period = period.replace(day=1)
    write.values["period"] = period
    t = write.table("crm_sales.sales_target")
    q = select(t.c.id).where(t.c.salesperson == write.get("salesperson"), t.c.period == period, t.c.deleted_at.is_(None))
    if not write.creating:
        q = q.where(t.c.id != write.current["id"])
    if write.conn.execute(q).first() is not None:
        return {"period": [text("This salesperson already has a target for {month}.", "该销售人员 {month} 已有目标。", month=f"{period:%Y-%m}")]}
    return {}


def _month_key(value) -> str:
    return value if isinstance(value, str) else f"{value:%Y-%m}"


def target_vs_actual(services, actor, start: dt.date, end: dt.date) -> list[dict]:
    """Rows ``{salesperson, month, target, actual, attainment}`` for months from ``start`` to ``end`` (inclusive):
    every salesperson-month with a target or a won deal. Attainment is actual / target (None without a target)."""
    from crmkit.runtime.query.aggregate import GroupSpec, MeasureSpec

    q = services.queries
    first, last = start.replace(day=1), end
    targets = q.aggregate("crm_sales.sales_target", actor, groups=[GroupSpec("salesperson"), GroupSpec("period", "month")],
                          measures=[MeasureSpec("target", "sum", "target")],
                          filter={"field": "period", "op": "between", "value": [first.isoformat(), last.isoformat()]})
    won = q.aggregate("crm_sales.opportunity", actor, groups=[GroupSpec("owner"), GroupSpec("closed_on", "month")],
                      measures=[MeasureSpec("actual", "sum", "amount")],
                      filter={"and": [{"field": "stage", "op": "eq", "value": "won"},
                                      {"field": "closed_on", "op": "between", "value": [first.isoformat(), last.isoformat()]}]})
    rows: dict[tuple, dict] = {}
    for r in targets.rows:
        who, month = r["keys"]
        rows.setdefault((who, _month_key(month)), {"target": ZERO, "actual": ZERO})["target"] = r["values"]["target"] or ZERO
    for r in won.rows:
        who, month = r["keys"]
        if who is None:
            continue
        rows.setdefault((who, _month_key(month)), {"target": ZERO, "actual": ZERO})["actual"] = r["values"]["actual"] or ZERO
    out = []
    for (who, month), v in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        target, actual = decimal.Decimal(v["target"]), decimal.Decimal(v["actual"])
        out.append({"salesperson": who, "month": month, "target": target, "actual": actual,
                    "attainment": (actual / target).quantize(decimal.Decimal("0.0001")) if target else None})
    return out
