"""AppHooks.job: app job kinds and their schedules land in the job registry; they run only where the app is installed."""
from __future__ import annotations

import datetime as dt

from huey import crontab

from crmkit.apps.membership.ledger import LedgerService
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.jobs import JobRegistry
from crmkit.runtime.packages import AppHooks

from ledger_support import make_member


def test_membership_schedules_its_daily_jobs(services):
    reg = services.jobs.registry
    periodic = {p.kind: p for p in reg.periodic_jobs()}
    minutes = {"membership.points_expire": 10, "membership.coupons_expire": 20, "membership.levels_evaluate": 40}
    for kind, minute in minutes.items():
        fires = [h for h in range(24) for mi in range(60) if periodic[kind].schedule(dt.datetime(2026, 6, 1, h, mi))]
        assert fires == [18]  # once a day, 02:xx China time
        assert periodic[kind].schedule(dt.datetime(2026, 6, 1, 18, minute))
    assert periodic["membership.levels_evaluate"].payload == {"period_end_only": True}
    assert "membership.coupons_issue" in reg and "membership.coupons_issue" not in periodic


def test_scheduled_points_expiry_job_expires_due_lots(services):
    m = make_member(services)
    LedgerService(services.engine).earn(m, 50, key="old", actor=SYSTEM, expires_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    job = services.jobs.submit_periodic("membership.points_expire", {})
    assert services.jobs.execute(job) == "succeeded" and services.jobs.get(job)["result"] == {"entries": 1}
    assert LedgerService(services.engine).balances(m)["reward"]["wallet"] == 0
    again = services.jobs.submit("membership.points_expire", {}, actor=None)
    assert services.jobs.execute(again) == "succeeded" and services.jobs.get(again)["result"] == {"entries": 0}


def test_app_job_is_a_no_op_where_the_app_is_not_installed(base_services):
    job = base_services.jobs.submit("membership.coupons_expire", {}, actor=None)
    assert base_services.jobs.execute(job) == "succeeded"
    assert base_services.jobs.get(job)["result"] == {"skipped": "app membership is not installed"}


def test_attach_registers_app_job_kinds_and_schedules():
    hooks = AppHooks()
    hooks.job("demo.tick", lambda ctx, p: None, schedule=crontab(minute="0"), payload={"x": 1})
    hooks.job("demo.once", lambda ctx, p: None)
    reg = JobRegistry()
    hooks.attach(None, reg)
    assert reg.kinds() == ["demo.once", "demo.tick"]
    assert [(p.kind, p.payload) for p in reg.periodic_jobs()] == [("demo.tick", {"x": 1})]
