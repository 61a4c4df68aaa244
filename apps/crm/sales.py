"""Sales rules on write: weighted amount, close date and sales cycle for opportunities; quote and contract totals
from their lines, and whether a quote's discount needs approval (threshold in ``data/sales.json``).

Stages and their probabilities are the opportunity workflow (``sales/workflows/opportunity.json``): its
transitions move the read-only ``stage`` field and set ``probability``; these validators then run on the
transition's write like on any other.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from crmkit.runtime.i18n_text import text

CENT = decimal.Decimal("0.01")
CLOSED = ("won", "lost")
LINES = {"crm_sales.quote": "crm_sales.quote_line", "crm_sales.contract": "crm_sales.contract_line", "crm_sales.order": "crm_sales.order_line"}


@cache
def settings() -> dict:
    return json.loads((Path(__file__).parent / "data" / "sales.json").read_text(encoding="utf-8"))


def discount_threshold() -> decimal.Decimal:
    return decimal.Decimal(str(settings()["discount_approval_threshold"]))


def today() -> dt.date:
    return dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()


def _dec(value) -> decimal.Decimal:
    try:
        return decimal.Decimal(str(value)) if value not in (None, "") else decimal.Decimal(0)
    except decimal.InvalidOperation:
        return decimal.Decimal(0)  # the child-row validation reports the bad value


def _date(value) -> dt.date | None:
    if value in (None, ""):
        return None
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def weighted(amount, probability) -> decimal.Decimal | None:
    if amount in (None, ""):
        return None
    return (_dec(amount) * _dec(probability) / 100).quantize(CENT, rounding=decimal.ROUND_HALF_UP)


def opportunity_validator(write) -> dict:
    stage = write.get("stage")
    if stage == "lost" and not (write.get("lost_reason") or "").strip():
        return {"lost_reason": [text("Say why the deal was lost.", "请填写输单原因。")]}
    if write.creating and not write.get("opened_on"):
        write.values["opened_on"] = today()
    write.values["weighted_amount"] = weighted(write.get("amount"), write.get("probability"))
    write.values["won"] = 1 if stage == "won" else 0
    if stage in CLOSED:
        closed = _date(write.get("closed_on")) or today()
        opened = _date(write.get("opened_on"))
        if opened and closed < opened:
            return {"closed_on": [text("The close date is before the opening date.", "结单日期早于立项日期。")]}
        write.values["closed_on"] = closed
        write.values["cycle_days"] = (closed - opened).days if opened else None
    return {}


def line_amount(row: dict) -> decimal.Decimal:
    gross = _dec(row.get("quantity")) * _dec(row.get("unit_price"))
    return (gross * (1 - _dec(row.get("discount")) / 100)).quantize(CENT, rounding=decimal.ROUND_HALF_UP)


def _lines(write) -> list[dict] | None:
    """The document's lines after this write, or None when the lines are not sent."""
    name = "lines"
    if name not in write.children:
        return None
    stored = {}
    if not write.creating:  # a row sent with its id and only the changed values keeps its other stored values
        t = write.table(LINES[write.entity.key])
        stored = {r["id"]: dict(r) for r in write.conn.execute(select(t).where(t.c.parent_id == write.current["id"])).mappings()}
    return [{**stored.get(r.get("id"), {}), **r} for r in write.children[name] if isinstance(r, dict)]


def document_validator(write) -> dict:
    """Quote, contract and order: the total is the sum of the lines, recomputed whenever the lines are sent."""
    rows = _lines(write)
    if rows is not None:
        if not write.creating and write.get("status") not in (None, "draft") and write.entity.key != "crm_sales.order":
            return {"lines": [text("Lines can be changed only while the document is a draft.", "只有草稿状态才能修改明细。")]}
        write.values["total"] = sum((line_amount(r) for r in rows), decimal.Decimal("0.00"))
        if "max_discount" in write.entity.field_map:
            top = max((_dec(r.get("discount")) for r in rows), default=decimal.Decimal(0))
            write.values["max_discount"] = top
            write.values["needs_approval"] = top > discount_threshold()
    elif write.creating:
        write.values["total"] = decimal.Decimal("0.00")
        if "max_discount" in write.entity.field_map:
            write.values["max_discount"], write.values["needs_approval"] = decimal.Decimal(0), False
    return {}


quote_validator = document_validator
