"""Periodic settlement statements per merchant: draft → confirmed by the merchant → settled.

A statement's totals are computed from the period's records (business days in China Standard Time):
- redemptions still in force (``status = done``): count, benefits funded by the merchant and by the club, points;
- ``points_value`` = points × the merchant's settlement value per point;
- ``member_sales`` = valid member purchases at the merchant; ``fees`` = member_sales × fee rate;
- ``amount_due`` (club → merchant) = club-funded benefits + points value − fees.

Once a statement is confirmed its totals are frozen (a listener refuses any change to them). A settled period is
corrected only by adjustment entries (child rows), whose sum is kept in ``adjustments_total``; a redemption
reversed after settlement is booked as an adjustment on that period's statement, never by editing it.
"""
from __future__ import annotations

import datetime as dt
import decimal
import io

from sqlalchemy import func, select

from crmkit.apps.membership.earning import BUSINESS_TZ
from crmkit.runtime.actor import Actor
from crmkit.runtime.i18n_text import text

from .errors import SettlementRefused
from .staff import FINANCE_ROLE, MANAGER_ROLE, as_app, require_role

D = decimal.Decimal
CENT = D("0.01")
SETTLEMENT = "alliance.settlement"
TOTALS = ("redemptions", "merchant_benefits", "club_benefits", "points", "points_value", "member_sales", "fees", "amount_due", "period_start",
          "period_end", "merchant")


def day_bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    lo = dt.datetime.combine(start, dt.time(), BUSINESS_TZ).astimezone(dt.timezone.utc)
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), BUSINESS_TZ).astimezone(dt.timezone.utc)
    return lo, hi


def compute_totals(services, merchant_id: int, start: dt.date, end: dt.date) -> dict:
    tables = services.records.table_cache.tables(services.store.catalog())
    r, p, m = tables["alliance.redemption"], tables["alliance.purchase"], tables["alliance.merchant"]
    lo, hi = day_bounds(start, end)
    with services.engine.connect() as c:
        merchant = c.execute(select(m.c.fee_rate, m.c.point_value).where(m.c.id == merchant_id)).one()
        in_period = (r.c.merchant == merchant_id, r.c.status == "done", r.c.deleted_at.is_(None), r.c.redeemed_at >= lo, r.c.redeemed_at < hi)
        rows = c.execute(select(r.c.funded_by, func.count(), func.coalesce(func.sum(r.c.benefit_amount), 0), func.coalesce(func.sum(r.c.points), 0))
                         .where(*in_period).group_by(r.c.funded_by)).all()
        sales = c.execute(select(func.coalesce(func.sum(p.c.amount), 0)).where(
            p.c.merchant == merchant_id, p.c.status == "done", p.c.deleted_at.is_(None), p.c.purchased_at >= lo, p.c.purchased_at < hi)).scalar_one()
    count = sum(int(x[1]) for x in rows)
    benefits = {row[0]: D(str(row[2])) for row in rows}
    points = sum(int(x[3]) for x in rows)
    points_value = (D(points) * D(str(merchant.point_value or 0))).quantize(CENT)
    fees = (D(str(sales)) * D(str(merchant.fee_rate or 0)) / 100).quantize(CENT, rounding=decimal.ROUND_HALF_UP)
    club = benefits.get("club", D(0)).quantize(CENT)
    return {"redemptions": count, "merchant_benefits": str(benefits.get("merchant", D(0)).quantize(CENT)), "club_benefits": str(club),
            "points": points, "points_value": str(points_value), "member_sales": str(D(str(sales)).quantize(CENT)), "fees": str(fees),
            "amount_due": str((club + points_value - fees).quantize(CENT))}


def create_statement(services, merchant_id: int, start: dt.date, end: dt.date, *, actor: Actor) -> int:
    """A draft statement for the period; one statement per merchant and period (the reference is unique)."""
    if end < start:
        raise SettlementRefused(text("The period must end on or after its start.", "结算期间的结束日期不能早于开始日期。"))
    require_role(services, actor, MANAGER_ROLE, FINANCE_ROLE)
    merchant = services.queries.get("alliance.merchant", merchant_id, actor)
    ref = f"S-{merchant['code']}-{start:%Y%m%d}-{end:%Y%m%d}"
    data = {"ref": ref, "merchant": merchant_id, "period_start": start.isoformat(), "period_end": end.isoformat(),
            **compute_totals(services, merchant_id, start, end)}
    return services.records.create(SETTLEMENT, data, as_app(actor))


def add_adjustment(services, settlement_id: int, amount: D, reason: str, *, actor: Actor, redemption_id: int | None = None) -> int:
    """Book a correction on a confirmed or settled statement as an adjustment entry (the totals stay as they were)."""
    require_role(services, actor, FINANCE_ROLE)
    if not (reason or "").strip():
        raise SettlementRefused(text("Give a reason for the adjustment.", "请填写调整原因。"))
    current = services.queries.get(SETTLEMENT, settlement_id, actor)
    if current.get("workflow_state") == "draft":
        raise SettlementRefused(text("A draft statement is recomputed, not adjusted.", "草稿结算单应重新计算，而不是调整。"))
    rows = [{"id": a["id"], "amount": a["amount"], "reason": a["reason"], "redemption": a.get("redemption")} for a in current.get("adjustments") or []]
    rows.append({"amount": str(D(str(amount)).quantize(CENT)), "reason": reason.strip()[:200], "redemption": redemption_id})
    total = sum((D(str(a["amount"])) for a in rows), D(0)).quantize(CENT)
    return services.records.update(SETTLEMENT, settlement_id, {"adjustments": rows, "adjustments_total": str(total)}, as_app(actor),
                                   expected_version=current["row_version"])


def on_settlement_written(conn, written) -> None:
    """Refuse changes to a confirmed or settled statement's totals, and keep adjustments_total = Σ adjustments."""
    if written.verb != "updated":
        return
    t = written.table
    row = conn.execute(select(t).where(t.c.id == written.record_id)).mappings().one()
    before = (written.changes.get("workflow_state") or [row["workflow_state"]])[0] if isinstance(written.changes.get("workflow_state"), list) \
        else row["workflow_state"]
    frozen = before in ("confirmed", "settled") or row["workflow_state"] == "settled"
    touched = set(written.changes) & set(TOTALS)
    if frozen and touched:
        raise SettlementRefused(text("A confirmed or settled statement cannot be changed; book an adjustment instead.",
                                     "已确认或已结算的结算单不能修改，请录入调整分录。"), details={"fields": sorted(touched)})
    adj = written.tables["alliance.settlement_adjustment"]
    total = conn.execute(select(func.coalesce(func.sum(adj.c.amount), 0)).where(adj.c.parent_id == written.record_id)).scalar_one()
    if D(str(total)).quantize(CENT) != D(str(row["adjustments_total"] or 0)).quantize(CENT):
        raise SettlementRefused(text("The adjustments total must equal the sum of the adjustment entries.", "调整合计必须等于各调整分录之和。"))


def export_xlsx(services, settlement_id: int, actor: Actor) -> bytes:
    """The statement and its redemptions as a workbook (cells neutralised against formula injection)."""
    from openpyxl import Workbook

    services.policy.check(actor, services.store.catalog().entity(SETTLEMENT), "export")
    s = services.queries.get(SETTLEMENT, settlement_id, actor)
    wb = Workbook()
    ws = wb.active
    ws.title = "Statement"
    merchant = services.queries.get("alliance.merchant", s["merchant"], actor)
    for label, value in [("结算单号 Reference", s["ref"]), ("商家 Merchant", merchant["name"]), ("期间 Period", f"{s['period_start']} – {s['period_end']}"),
                         ("状态 Status", s.get("workflow_state")), ("核销笔数 Redemptions", s["redemptions"]),
                         ("商家承担优惠 Merchant-funded", s["merchant_benefits"]), ("俱乐部承担优惠 Club-funded", s["club_benefits"]),
                         ("核销积分 Points", s["points"]), ("积分结算金额 Points value", s["points_value"]), ("会员消费额 Member sales", s["member_sales"]),
                         ("服务费 Fees", s["fees"]), ("应付商家 Due", s["amount_due"]), ("调整合计 Adjustments", s.get("adjustments_total"))]:
        _append(ws, [label, value])
    adj = wb.create_sheet("Adjustments")
    _append(adj, ["金额 Amount", "原因 Reason"])
    for a in s.get("adjustments") or []:
        _append(adj, [_money(a["amount"]), a["reason"]])
    lines = wb.create_sheet("Redemptions")
    _append(lines, ["单号 Ref", "时间 At", "优惠 Offer", "优惠金额 Benefit", "积分 Points", "承担 Funded by"])
    start, end = dt.date.fromisoformat(str(s["period_start"])), dt.date.fromisoformat(str(s["period_end"]))
    lo, hi = day_bounds(start, end)
    tables = services.records.table_cache.tables(services.store.catalog())
    r, o = tables["alliance.redemption"], tables["alliance.offer"]
    with services.engine.connect() as c:
        for row in c.execute(select(r.c.ref, r.c.redeemed_at, o.c.name, r.c.benefit_amount, r.c.points, r.c.funded_by)
                             .join(o, o.c.id == r.c.offer).where(r.c.merchant == s["merchant"], r.c.status == "done", r.c.deleted_at.is_(None),
                                                                  r.c.redeemed_at >= lo, r.c.redeemed_at < hi).order_by(r.c.redeemed_at)):
            _append(lines, [row.ref, row.redeemed_at, row.name, _money(row.benefit_amount), row.points, row.funded_by])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _money(v):
    return None if v is None else D(str(v))


def _append(ws, values: list) -> None:
    """One row of cells through ``xlsx_value`` (formulas neutralised, long digit strings kept as text)."""
    from crmkit.runtime.spreadsheet import xlsx_value

    row = ws.max_row + 1 if ws.max_row > 1 or ws.cell(1, 1).value is not None else 1
    for col, value in enumerate(values, start=1):
        v, fmt = xlsx_value(value)
        cell = ws.cell(row=row, column=col, value=v)
        if fmt:
            cell.number_format = fmt
