"""AppHooks.job: app job kinds and their schedules land in the job registry; they run only where the app is installed."""
from __future__ import annotations

import datetime as dt

import pytest
from huey import crontab

from crmkit.apps.membership.ledger import LedgerService
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.jobs import JobRegistry
from crmkit.runtime.packages import AppHooks, AppPackage, register_app_jobs

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


def test_hook_validates_kinds():
    hooks = AppHooks()
    hooks.job("demo.tick", lambda ctx, p: None, periodic=crontab(minute="0"), payload={"x": 1})
    with pytest.raises(ValueError, match="twice"):
        hooks.job("demo.tick", lambda ctx, p: None)
    reg = JobRegistry()
    register_app_jobs(reg, {"demo": AppPackage(id="demo", path=None, hooks=hooks)})
    assert reg.kinds() == ["demo.tick"] and reg.periodic_jobs()[0].payload == {"x": 1}
    stray = AppHooks()
    stray.job("other.tick", lambda ctx, p: None)
    with pytest.raises(ValueError, match="must start with 'demo.'"):
        register_app_jobs(JobRegistry(), {"demo": AppPackage(id="demo", path=None, hooks=stray)})
