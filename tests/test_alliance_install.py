"""Installing the alliance template from the command line with demo data: membership comes first, the demo has
30 merchants with offers, six months of redemptions on the ledger and one settled period, and every report and
the dashboard run on it."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

from click.testing import CliRunner
from sqlalchemy import select

from crmkit.apps.alliance.settlement import compute_totals
from crmkit.apps.membership.ledger import check_invariants
from crmkit.apps.membership.ledger import tables as lt
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.cli import main
from crmkit.runtime.installer import install_order, installed_apps
from crmkit.runtime.packages import discover
from crmkit.runtime.reports.runner import run_report
from core_support import build_services


def test_alliance_depends_on_membership():
    assert install_order("alliance", discover()) == ["membership", "alliance"]


def test_cli_install_with_demo_data(empty_database_url, tmp_path):
    env = {"CRMKIT_DATABASE_URL": empty_database_url, "CRMKIT_VAR_DIR": str(tmp_path / "var"), "CRMKIT_SECRET_KEY": "cli-test-secret"}
    assert CliRunner().invoke(main, ["init"], env=env, catch_exceptions=False).exit_code == 0
    r = CliRunner().invoke(main, ["apps", "install", "alliance", "--demo", "--demo-size", "80"], env=env, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "Seeding demo data for membership" in r.output and "Seeding demo data for alliance" in r.output
    s = build_services(empty_database_url, tmp_path / "svc")
    try:
        assert set(installed_apps(s)) == {"membership", "alliance"}
        q = s.queries
        merchants = q.list("alliance.merchant", SYSTEM, limit=100, count="exact")
        assert merchants.total == 30
        states = {m["workflow_state"] for m in merchants.rows}
        assert states == {"applying", "formal", "terminated"} and all(m["status"] == m["workflow_state"] for m in merchants.rows)
        assert all(m["termination_reason"] for m in merchants.rows if m["workflow_state"] == "terminated")
        assert q.list("alliance.offer", SYSTEM, count="exact").total >= 60
        reds = q.list("alliance.redemption", SYSTEM, limit=1, count="exact", sort=["redeemed_at"])
        assert reds.total >= 150
        first = reds.rows[0]["redeemed_at"]
        last = q.list("alliance.redemption", SYSTEM, limit=1, sort=["-redeemed_at"]).rows[0]["redeemed_at"]
        assert (last - first).days >= 150 and last <= dt.datetime.now(dt.timezone.utc)
        settled = q.list("alliance.settlement", SYSTEM, limit=100, count="exact").rows
        assert settled and {x["workflow_state"] for x in settled} == {"settled"}
        for st in settled[:5]:  # the stored totals equal a fresh computation of the period
            fresh = compute_totals(s, st["merchant"], st["period_start"], st["period_end"])
            assert D(fresh["amount_due"]) == D(str(st["amount_due"])) and fresh["redemptions"] == st["redemptions"]
        with s.engine.connect() as c:
            assert check_invariants(c) == []
            sources = set(c.execute(select(lt.entry.c.source_type).distinct()).scalars())
        assert "alliance.merchant" in sources

        catalog = s.store.catalog()
        names = [k for k in catalog.reports if k.startswith("alliance.")]
        assert len(names) == 9
        for name in names:
            res = run_report(s, SYSTEM, catalog.report(name), {}, locale="zh")
            assert res.rows or res.compare is not None or res.totals, name
        by_merchant = run_report(s, SYSTEM, catalog.report("alliance.redemptions_by_merchant"), {}, locale="zh")
        assert sum(row.values["redemptions"] for row in by_merchant.rows) <= reds.total
        status = run_report(s, SYSTEM, catalog.report("alliance.merchants_by_status"), {}, locale="zh")
        assert sum(row.values["merchants"] for row in status.rows) == 30
        assert "alliance.overview" in catalog.dashboards
        # joint activities: three merchants on each demo membership activity; the activity reports show the demo
        activities = s.queries.list("membership.activity", SYSTEM, count="exact").total
        assert activities == 4 and s.queries.list("alliance.activity_merchant", SYSTEM, count="exact").total == 3 * activities
        for name in ("membership.activity_statistics", "membership.activity_costs"):
            assert run_report(s, SYSTEM, catalog.report(name), {}, locale="zh").rows, name
    finally:
        s.engine.dispose()
