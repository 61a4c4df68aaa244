"""Target attainment page (``/crm/sales/targets``): monthly targets against won amounts per salesperson, and the
same figures as a panel on a sales target's detail page. Read-only; figures come from ``forecast.target_vs_actual``
under the viewer's row scope (a rep sees their own targets and deals, a manager their team's)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from flask import Blueprint, current_app, render_template, request
from sqlalchemy import select

from crmkit.runtime.errors import BadQuery
from crmkit.runtime.i18n_text import text
from crmkit.runtime.org.tables import ab_user
from crmkit.runtime.web.i18n import current_locale
from crmkit.runtime.web.views import require_actor

from .forecast import target_vs_actual
from .sales import today

sales_blueprint = Blueprint("crm_sales_pages", __name__, url_prefix="/crm/sales", template_folder=str(Path(__file__).parent / "templates"))
TARGET = "crm_sales.sales_target"


def may_see_targets(services, actor) -> bool:
    """The sidebar link: for anyone who may read sales targets (the policy point; no query)."""
    return services.policy.allows(actor, services.store.catalog().entity(TARGET), "read")


def _services():
    return current_app.extensions["crmkit"]


def _month(raw: str | None, default: dt.date) -> dt.date:
    if not raw:
        return default
    try:
        return dt.date.fromisoformat(raw + "-01")
    except ValueError:
        raise BadQuery(text("A month is written YYYY-MM.", "月份格式为 YYYY-MM。")) from None


def _month_end(d: dt.date) -> dt.date:
    nxt = d.replace(year=d.year + d.month // 12, month=d.month % 12 + 1, day=1)
    return nxt - dt.timedelta(days=1)


def people_names(services, ids) -> dict[int, str]:
    """Display names: 姓名 in Chinese order for zh, "First Last" otherwise; the username when both are blank."""
    ids = [i for i in set(ids) if i is not None]
    if not ids:
        return {}
    zh = current_locale() == "zh"
    with services.engine.connect() as conn:
        rows = conn.execute(select(ab_user.c.id, ab_user.c.username, ab_user.c.first_name, ab_user.c.last_name).where(ab_user.c.id.in_(ids)))
        return {r.id: ((f"{r.last_name or ''}{r.first_name or ''}" if zh else f"{r.first_name or ''} {r.last_name or ''}").strip() or r.username)
                for r in rows}


def _rows(services, actor, start, end, salesperson=None):
    rows = target_vs_actual(services, actor, start, end)
    if salesperson is not None:
        rows = [r for r in rows if r["salesperson"] == salesperson]
    names = people_names(services, [r["salesperson"] for r in rows])
    for r in rows:
        r["name"] = names.get(r["salesperson"], "—")
    return rows


@sales_blueprint.route("/targets")
def targets():
    services, actor = _services(), require_actor()
    services.policy.check(actor, services.store.catalog().entity(TARGET), "read")
    this_month = today().replace(day=1)
    default_start = (this_month - dt.timedelta(days=150)).replace(day=1)
    start, last = _month(request.args.get("from"), default_start), _month(request.args.get("to"), this_month)
    if last < start:
        raise BadQuery(text("The last month is before the first.", "结束月份早于开始月份。"))
    rows = _rows(services, actor, start, _month_end(last))
    totals = {k: sum((r[k] for r in rows), start=type(rows[0][k])(0)) for k in ("target", "actual")} if rows else None
    return render_template("crm_sales/targets.html", rows=rows, totals=totals, start=f"{start:%Y-%m}", last=f"{last:%Y-%m}")


@sales_blueprint.route("/targets/<int:record_id>/panel")
def target_panel(record_id: int):
    """The panel on a target's detail page: that salesperson's month, target against won amount."""
    services, actor = _services(), require_actor()
    target = services.queries.get(TARGET, record_id, actor)
    period = target["period"] if isinstance(target["period"], dt.date) else dt.date.fromisoformat(str(target["period"]))
    rows = _rows(services, actor, period, _month_end(period), target["salesperson"])
    return render_template("crm_sales/_target_panel.html", row=rows[0] if rows else None)
