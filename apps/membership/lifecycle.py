"""Member lifecycle (潜在客 → 新客 → 活跃客 → 沉睡客 → 流失客), RFM scores and age band: stored member fields that the
report engine groups by, computed here from the member's join date, birthday and paid orders.

The thresholds are the first ``membership.lifecycle_setting`` record (editable by administrators; defaults when
there is none). Values are written through the record service (``assigned``: the fields are read-only for users), so
each change is audited and raises a ``record.updated`` event; unchanged members are not written at all.

Stage at day D (``idle`` = days since the last paid order; a member who never bought is measured from joining):
prospect — no purchase yet and joined fewer than ``churn_days`` ago; churned — idle ≥ ``churn_days``;
dormant — idle ≥ ``dormant_days``; new — joined fewer than ``new_days`` ago; otherwise active.

RFM uses fixed bands (not quintiles), so one member's score never depends on the others and an order can update it
at once: R by days since the last purchase, F by paid orders and M by spend (net of refunds) in the last 365 days.
"""
from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass

from sqlalchemy import Connection, and_, case, func, select

from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.db import write_transaction
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.i18n_text import text

from .earning import BUSINESS_TZ

MEMBER, ORDER, SETTING = "membership.member", "membership.order", "membership.lifecycle_setting"
STAGES = ("prospect", "new", "active", "dormant", "churned")
FIELDS = ("lifecycle_stage", "last_purchase_on", "orders_12m", "spend_12m", "rfm_r", "rfm_f", "rfm_m", "rfm_segment", "age_band")
WINDOW_DAYS = 365
CENT = decimal.Decimal("0.01")
R_BANDS = ((30, 5), (60, 4), (90, 3), (180, 2))            # days since last purchase ≤ n → score
F_BANDS = ((12, 5), (6, 4), (3, 3), (2, 2), (1, 1))        # orders in the window ≥ n → score
M_BANDS = ((10000, 5), (5000, 4), (2000, 3), (500, 2), (0, 1))  # spend in the window ≥ n yuan → score
AGE_BANDS = ((25, "under_25"), (35, "25_34"), (45, "35_44"), (55, "45_54"))


@dataclass(frozen=True)
class Thresholds:
    new_days: int = 30
    dormant_days: int = 30
    churn_days: int = 180


@dataclass(frozen=True)
class Facts:
    last_purchase: dt.date | None = None
    orders: int = 0
    spend: decimal.Decimal = decimal.Decimal(0)


def stage(joined_on: dt.date | None, last_purchase: dt.date | None, today: dt.date, th: Thresholds) -> str:
    if joined_on is None or joined_on > today:
        return "prospect"
    if last_purchase is None:
        return "churned" if (today - joined_on).days >= th.churn_days else "prospect"
    idle = (today - last_purchase).days
    if idle >= th.churn_days:
        return "churned"
    if idle >= th.dormant_days:
        return "dormant"
    return "new" if (today - joined_on).days < th.new_days else "active"


def rfm(facts: Facts, today: dt.date) -> dict:
    """The R, F, M scores (1–5) and the segment; no scores when nothing was bought in the window."""
    if facts.last_purchase is None or facts.orders == 0:
        return {"rfm_r": None, "rfm_f": None, "rfm_m": None, "rfm_segment": "no_purchase"}
    idle = (today - facts.last_purchase).days
    r = next((s for n, s in R_BANDS if idle <= n), 1)
    f = next((s for n, s in F_BANDS if facts.orders >= n), 1)
    m = next((s for n, s in M_BANDS if facts.spend >= n), 1)
    if r >= 4 and f >= 4 and m >= 4:
        seg = "champion"
    elif r >= 3 and f >= 3:
        seg = "loyal"
    elif r >= 4:
        seg = "promising"
    elif f >= 3 or m >= 3:
        seg = "at_risk"
    else:
        seg = "hibernating"
    return {"rfm_r": r, "rfm_f": f, "rfm_m": m, "rfm_segment": seg}


def age_band(birthday: dt.date | None, today: dt.date) -> str | None:
    if birthday is None or birthday > today:
        return None
    age = today.year - birthday.year - ((today.month, today.day) < (birthday.month, birthday.day))
    return next((band for limit, band in AGE_BANDS if age < limit), "55_plus")


def values_for(joined_on, birthday, facts: Facts, today: dt.date, th: Thresholds) -> dict:
    return {"lifecycle_stage": stage(joined_on, facts.last_purchase, today, th), "last_purchase_on": facts.last_purchase,
            "orders_12m": facts.orders, "spend_12m": facts.spend.quantize(CENT), **rfm(facts, today), "age_band": age_band(birthday, today)}


# --- reading ---------------------------------------------------------------------------------------------------------
def business_today(now: dt.datetime | None = None) -> dt.date:
    now = now or dt.datetime.now(dt.timezone.utc)
    return (now if now.tzinfo else now.replace(tzinfo=dt.timezone.utc)).astimezone(BUSINESS_TZ).date()


def load_thresholds(conn: Connection, tables: dict) -> Thresholds:
    s = tables[SETTING]
    row = conn.execute(select(s.c.new_days, s.c.dormant_days, s.c.churn_days).where(s.c.deleted_at.is_(None)).order_by(s.c.id).limit(1)).first()
    if row is None:
        return Thresholds()
    d = Thresholds()
    return Thresholds(row.new_days or d.new_days, row.dormant_days or d.dormant_days, row.churn_days or d.churn_days)


def setting(conn: Connection, tables: dict) -> dict:
    s = tables[SETTING]
    row = conn.execute(select(s).where(s.c.deleted_at.is_(None)).order_by(s.c.id).limit(1)).mappings().first()
    return dict(row) if row else {}


def _day(value) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).astimezone(BUSINESS_TZ).date()


def facts(conn: Connection, tables: dict, today: dt.date, member_id: int | None = None) -> dict[int, Facts]:
    """Member id → purchase facts at ``today``: paid orders not in the recycle bin, dated by ``ordered_at``."""
    o = tables[ORDER]
    at = func.coalesce(o.c.ordered_at, o.c.created_at)
    end = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), BUSINESS_TZ).astimezone(dt.timezone.utc)
    start = dt.datetime.combine(today - dt.timedelta(days=WINDOW_DAYS - 1), dt.time(), BUSINESS_TZ).astimezone(dt.timezone.utc)
    in_window = and_(at >= start, at < end)
    net = o.c.amount - func.coalesce(o.c.refunded_amount, 0)
    q = (select(o.c.member, func.max(at).label("last"), func.sum(case((in_window, 1), else_=0)).label("n"),
                func.sum(case((in_window, net), else_=0)).label("spend"))
         .where(o.c.deleted_at.is_(None), o.c.payment_status == "paid", at < end).group_by(o.c.member))
    if member_id is not None:
        q = q.where(o.c.member == member_id)
    return {r.member: Facts(_day(r.last), int(r.n or 0), decimal.Decimal(str(r.spend or 0))) for r in conn.execute(q)}


# --- writing ---------------------------------------------------------------------------------------------------------
def _same(a, b) -> bool:
    if isinstance(a, decimal.Decimal) or isinstance(b, decimal.Decimal):
        return a is not None and b is not None and decimal.Decimal(str(a)).quantize(CENT) == decimal.Decimal(str(b)).quantize(CENT)
    if isinstance(b, dt.datetime):
        b = b.date()
    return a == b


def _trusted(actor: Actor) -> Actor:
    # The lifecycle rule, not whoever recorded the order, authorizes writing these read-only fields.
    return Actor(id=actor.id, username=actor.username, is_admin=True, locale=actor.locale)


def refresh_in(conn: Connection, records, tables: dict, member_id: int, today: dt.date, *, th: Thresholds | None = None,
               known: Facts | None = None, actor: Actor = SYSTEM) -> dict:
    """Recompute one member inside the caller's transaction; writes and returns only the fields that changed."""
    m = tables[MEMBER]
    row = conn.execute(select(m.c.id, m.c.joined_on, m.c.birthday, m.c.deleted_at, *(m.c[f] for f in FIELDS)).where(m.c.id == member_id)).first()
    if row is None or row.deleted_at is not None:
        return {}
    th = th or load_thresholds(conn, tables)
    if known is None:
        known = facts(conn, tables, today, member_id).get(member_id, Facts())
    new = values_for(row.joined_on, row.birthday, known, today, th)
    changed = {k: v for k, v in new.items() if not _same(v, getattr(row, k))}
    if changed:
        records.update_within(conn, MEMBER, member_id, {}, _trusted(actor), assigned=changed)
    return changed


def refresh_all(services, now: dt.datetime | None = None, *, actor: Actor = SYSTEM, progress=None) -> dict:
    """The daily run: every member recomputed at ``now``'s business day; one transaction per changed member."""
    today = business_today(now)
    tables = services.records.table_cache.tables(services.store.catalog())
    m = tables[MEMBER]
    with services.engine.connect() as c:
        th = load_thresholds(c, tables)
        known = facts(c, tables, today)
        rows = c.execute(select(m.c.id, m.c.joined_on, m.c.birthday, *(m.c[f] for f in FIELDS)).where(m.c.deleted_at.is_(None))
                         .order_by(m.c.id)).all()
    changed, stages = 0, dict.fromkeys(STAGES, 0)
    for n, row in enumerate(rows, 1):
        f = known.get(row.id, Facts())
        new = values_for(row.joined_on, row.birthday, f, today, th)
        stages[new["lifecycle_stage"]] += 1
        if any(not _same(v, getattr(row, k)) for k, v in new.items()):
            with write_transaction(services.engine) as conn:  # re-read under the row lock: an order may have arrived since
                if refresh_in(conn, services.records, tables, row.id, today, th=th, actor=actor):
                    changed += 1
        if progress is not None and (n % 200 == 0 or n == len(rows)):
            progress(n, len(rows), None)
    return {"day": today.isoformat(), "members": len(rows), "changed": changed, "stages": stages}


def on_order_written(conn: Connection, written) -> None:
    """An order recorded, paid, refunded or deleted: the member's stage and scores follow at once."""
    order = conn.execute(select(written.table.c.member).where(written.table.c.id == written.record_id)).first()
    if order is not None and order.member is not None:
        refresh_in(conn, written.records, written.tables, order.member, business_today(), actor=written.actor)


def check_setting(conn: Connection, written) -> None:
    """Churned must come after dormant, or no member could ever be dormant."""
    if written.verb not in ("created", "updated"):
        return
    row = conn.execute(select(written.table).where(written.table.c.id == written.record_id)).mappings().one()
    if row["dormant_days"] is not None and row["churn_days"] is not None and row["churn_days"] <= row["dormant_days"]:
        raise ValidationFailed({"churn_days": [text("Churned after must be more days than dormant after ({n}).",
                                                    "流失天数须大于沉睡天数（{n}）。", n=row["dormant_days"])]})
