"""The membership lifecycle, RFM, profile, points and reward reports against an independent computation over the demo
data (read straight from the tables), plus the dashboard and workbench defaults that show them."""
from __future__ import annotations

import datetime as dt
import decimal
from collections import Counter, defaultdict

import pytest
from sqlalchemy import select

from crmkit.apps.membership.ledger import LedgerService
from crmkit.apps.membership.ledger import tables as lt
from crmkit.apps.membership.lifecycle_hooks import refresh
from crmkit.apps.membership.redemption import redeem_reward
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.installer import install
from crmkit.runtime.reports.runner import run_report

CN = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture(scope="module")
def services(databases, tmp_path_factory):
    """One app for the module: its tests only read, and seeding the demo costs 10-50 s (this overrides conftest's
    per-test ``services``)."""
    from conftest import make_settings
    from crmkit.runtime.web.app import create_app

    app = create_app(make_settings(databases.fresh("membership"), tmp_path_factory.mktemp("reports")), testing=True)
    yield app.extensions["crmkit"]
    with app.app_context():
        app.extensions["sqlalchemy"].session.remove()
        app.extensions["crmkit"].engine.dispose()


@pytest.fixture(scope="module")
def seeded(services):
    """The demo (members, orders, plan, rewards, coupons), some redemptions and some expired points, figures refreshed."""
    install(services, "membership", demo=True, demo_size=40)
    t = services.records.table_cache.tables(services.store.catalog())
    ledger = LedgerService(services.engine)
    with services.engine.connect() as c:
        rich = c.execute(select(lt.account.c.member_id).where(lt.account.c.kind == "wallet", lt.account.c.currency == "reward",
                                                              lt.account.c.balance >= 600).order_by(lt.account.c.member_id)).scalars().all()
        items = {r.code: r.id for r in c.execute(select(t["membership.reward_item"].c.code, t["membership.reward_item"].c.id))}
    assert len(rich) >= 3, "the demo should give several members enough points to redeem"
    for i, m in enumerate(rich[:4]):
        redeem_reward(services, m, items["BAG"] if i % 2 else items["CPN15"], 1, actor=SYSTEM, key=f"test:redeem:{m}")
    now = dt.datetime.now(dt.timezone.utc)
    for i, m in enumerate(rich[:3]):
        ledger.earn(m, 50 + i, key=f"test:short:{m}", actor=SYSTEM, expires_at=now - dt.timedelta(minutes=5))
    assert ledger.expire_due(now) >= 3
    refresh(services, {})
    return t


def report(services, name):
    return run_report(services, SYSTEM, services.store.catalog().report(f"membership.{name}"), expand=True)


def by_first_key(res, measure):
    out = defaultdict(lambda: 0)
    for r in res.rows:
        out[r.cells[0].key] += r.values[measure] or 0
    return dict(out)


def members(services, t):
    m = t["membership.member"]
    with services.engine.connect() as c:
        return [dict(r) for r in c.execute(select(m).where(m.c.deleted_at.is_(None))).mappings()]


def paid_orders(services, t):
    o = t["membership.order"]
    with services.engine.connect() as c:
        return [dict(r) for r in c.execute(select(o).where(o.c.deleted_at.is_(None), o.c.payment_status == "paid")).mappings()]


def _cn_day(value):
    value = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(CN).date()


def test_lifecycle_funnel_and_rfm_match_a_computation_from_members_and_orders(services, seeded):
    today = dt.datetime.now(CN).date()
    last, n12, spend12 = {}, Counter(), defaultdict(decimal.Decimal)
    for o in paid_orders(services, seeded):
        day = _cn_day(o["ordered_at"] or o["created_at"])
        last[o["member"]] = max(last.get(o["member"], day), day)
        if (today - day).days < 365:
            n12[o["member"]] += 1
            spend12[o["member"]] += decimal.Decimal(str(o["amount"])) - decimal.Decimal(str(o["refunded_amount"] or 0))
    stages, segments, seg_spend = Counter(), Counter(), defaultdict(decimal.Decimal)
    for m in members(services, seeded):
        joined, lp = m["joined_on"], last.get(m["id"])
        if joined > today:
            s = "prospect"
        elif lp is None:
            s = "churned" if (today - joined).days >= 180 else "prospect"
        elif (today - lp).days >= 180:
            s = "churned"
        elif (today - lp).days >= 30:
            s = "dormant"
        else:
            s = "new" if (today - joined).days < 30 else "active"
        stages[s] += 1
        if not n12[m["id"]]:
            seg = "no_purchase"
        else:
            idle = (today - lp).days
            r = 5 if idle <= 30 else 4 if idle <= 60 else 3 if idle <= 90 else 2 if idle <= 180 else 1
            f = min(5, {1: 1, 2: 2}.get(n12[m["id"]], 3 if n12[m["id"]] < 6 else 4 if n12[m["id"]] < 12 else 5))
            mm = spend12[m["id"]]
            mo = 5 if mm >= 10000 else 4 if mm >= 5000 else 3 if mm >= 2000 else 2 if mm >= 500 else 1
            seg = ("champion" if r >= 4 and f >= 4 and mo >= 4 else "loyal" if r >= 3 and f >= 3 else "promising" if r >= 4
                   else "at_risk" if f >= 3 or mo >= 3 else "hibernating")
        segments[seg] += 1
        seg_spend[seg] += spend12[m["id"]]
    assert by_first_key(report(services, "lifecycle_funnel"), "members") == {k: v for k, v in stages.items() if v}
    assert len(stages) >= 3  # the demo spreads members over several stages
    rfm = report(services, "rfm_segments")
    assert by_first_key(rfm, "members") == dict(segments)
    assert {k: decimal.Decimal(str(v)) for k, v in by_first_key(rfm, "spend").items()} == {k: v.quantize(decimal.Decimal("0.01"))
                                                                                          for k, v in seg_spend.items()}


def test_member_profile_matches_gender_age_band_and_region(services, seeded):
    today = dt.datetime.now(CN).date()

    def band(b):
        if b is None:
            return None
        age = today.year - b.year - ((today.month, today.day) < (b.month, b.day))
        return "under_25" if age < 25 else "25_34" if age < 35 else "35_44" if age < 45 else "45_54" if age < 55 else "55_plus"

    want = Counter((band(m["birthday"]), m["gender"], m["org_unit_id"]) for m in members(services, seeded))
    res = report(services, "member_profile")
    got = Counter({(rk[0], rk[1], ck): v["members"] for (rk, ck), v in res.pivot.items() if len(rk) == 2 and v["members"]})
    assert got == want and len({k[2] for k in want}) >= 2  # members in several stores' regions


def test_points_per_plan_and_liability_match_the_ledger(services, seeded):
    plan_t = seeded["membership.points_plan"]
    with services.engine.connect() as c:
        plan = c.execute(select(plan_t).where(plan_t.c.deleted_at.is_(None))).mappings().one()  # the demo has one plan
        entries = c.execute(select(lt.entry.c.id, lt.entry.c.kind, lt.entry.c.amount, lt.entry.c.reversal_of)
                            .where(lt.entry.c.currency == "reward")).all()
        redeemed = sum(c.execute(select(lt.redemption.c.points)).scalars())
        wallets = sum(c.execute(select(lt.account.c.balance).where(lt.account.c.kind == "wallet", lt.account.c.currency == "reward")).scalars())
    kinds = {e.id: e.kind for e in entries}
    issued = sum(e.amount for e in entries if e.kind in ("earn", "earn_pending") or (e.kind == "adjust" and e.amount > 0)
                 or (e.kind == "reverse" and kinds[e.reversal_of] in ("earn", "earn_pending")))
    expired = -sum(e.amount for e in entries if e.kind == "expire")
    assert redeemed > 0 and expired >= 150
    res = report(services, "points_by_plan")
    row = [r for r in res.rows if r.cells[0].key == plan["name"]][0]
    assert (row.values["issued"], row.values["redeemed"], row.values["expired"]) == (issued, redeemed, expired)
    liab = report(services, "points_liability")
    row = [r for r in liab.rows if r.cells[0].key == plan["name"]][0]
    assert row.values["outstanding"] == wallets
    assert decimal.Decimal(str(row.values["liability"])) == (decimal.Decimal(wallets) * decimal.Decimal(str(plan["point_value"]))).quantize(
        decimal.Decimal("0.01"))


def test_reward_statistics_match_the_redemptions(services, seeded):
    items = seeded["membership.reward_item"]
    with services.engine.connect() as c:
        names = dict(c.execute(select(items.c.id, items.c.name)).all())
        rows = c.execute(select(lt.redemption.c.item_id, lt.redemption.c.member_id, lt.redemption.c.quantity, lt.redemption.c.points)).all()
    qty, pts, who = Counter(), Counter(), defaultdict(set)
    for r in rows:
        qty[names[r.item_id]] += r.quantity
        pts[names[r.item_id]] += r.points
        who[names[r.item_id]].add(r.member_id)
    res = report(services, "reward_stats")
    got = {r.cells[1].key: (r.values["quantity"], r.values["points"], r.values["redeemers"]) for r in res.rows if len(r.cells) == 2}
    assert {k: v for k, v in got.items() if v[0]} == {k: (qty[k], pts[k], len(who[k])) for k in qty}
    assert all(v == (0, 0, 0) for k, v in got.items() if k not in qty)


def test_dashboard_lists_the_new_reports_and_workbench_defaults_are_set(services):
    from crmkit.runtime.workbench.service import WorkbenchService
    from crmkit.runtime.org.tables import ab_role

    dash = services.store.catalog().dashboard("membership.overview")
    assert {"membership.lifecycle_funnel", "membership.rfm_segments", "membership.member_profile", "membership.points_by_plan",
            "membership.points_liability", "membership.reward_stats"} <= {w.report for w in dash.widgets}
    with services.engine.connect() as c:
        roles = dict(c.execute(select(ab_role.c.name, ab_role.c.id)).all())
    bench = WorkbenchService(services.engine)
    defaults = bench.role_defaults()
    assert {"kind": "entity", "target": "membership.member"} in defaults[roles["Front Desk"]]
    assert {"kind": "dashboard", "target": "membership.overview"} in defaults[roles["Membership Manager"]]
    bench.set_role_default(roles["Front Desk"], [("entity", "membership.order")], actor_id=None)  # an administrator's choice
    install(services, "membership")
    assert bench.role_defaults()[roles["Front Desk"]] == [{"kind": "entity", "target": "membership.order"}]  # survives a reinstall
