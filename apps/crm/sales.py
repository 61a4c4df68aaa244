"""Sales rules on write: stage → probability, a lost reason for lost deals, quote totals from the lines."""
from __future__ import annotations

import decimal

from sqlalchemy import select

from crmkit.runtime.i18n_text import text

STAGE_PROBABILITY = {"prospecting": 10, "qualification": 20, "proposal": 50, "negotiation": 75, "won": 100, "lost": 0}
CENT = decimal.Decimal("0.01")


def opportunity_validator(write) -> dict:
    stage = write.get("stage")
    if stage == "lost" and not (write.get("lost_reason") or "").strip():
        return {"lost_reason": [text("Say why the deal was lost.", "请填写输单原因。")]}
    if stage in STAGE_PROBABILITY:
        write.values["probability"] = decimal.Decimal(STAGE_PROBABILITY[stage])
    return {}


def _dec(value) -> decimal.Decimal:
    try:
        return decimal.Decimal(str(value)) if value not in (None, "") else decimal.Decimal(0)
    except decimal.InvalidOperation:
        return decimal.Decimal(0)  # the child-row validation reports the bad value


def line_amount(row: dict) -> decimal.Decimal:
    gross = _dec(row.get("quantity")) * _dec(row.get("unit_price"))
    return (gross * (1 - _dec(row.get("discount")) / 100)).quantize(CENT, rounding=decimal.ROUND_HALF_UP)


def quote_validator(write) -> dict:
    """The total is the sum of the lines, recomputed whenever the lines are sent."""
    if "lines" in write.children:
        stored = {}
        if not write.creating:  # a row sent with its id and only the changed values keeps its other stored values
            t = write.table("crm_sales.quote_line")
            stored = {r["id"]: dict(r) for r in write.conn.execute(select(t).where(t.c.parent_id == write.current["id"])).mappings()}
        rows = [{**stored.get(r.get("id"), {}), **r} for r in write.children["lines"] if isinstance(r, dict)]
        write.values["total"] = sum((line_amount(r) for r in rows), decimal.Decimal("0.00"))
    elif write.creating:
        write.values["total"] = decimal.Decimal("0.00")
    return {}
