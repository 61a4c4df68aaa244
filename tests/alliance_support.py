"""Shared pieces for the alliance tests: an app with membership + alliance installed, a points plan, levels,
members, merchants in formal cooperation (through the workflow service) and offers."""
from __future__ import annotations

import datetime as dt

import pytest

from crmkit.runtime.actor import SYSTEM

TODAY = dt.date.today()
NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture
def al_app(make_app):
    return make_app("alliance")


@pytest.fixture
def al(al_app):
    return al_app.extensions["crmkit"]


def make_levels(services) -> tuple[int, int]:
    silver = services.records.create("membership.level", {"name": "普卡", "code": "SILVER", "level_value": 1}, SYSTEM)
    gold = services.records.create("membership.level", {"name": "金卡", "code": "GOLD", "level_value": 2}, SYSTEM)
    return silver, gold


def make_plan(services, per_yuan: str = "1") -> int:
    plan = services.records.create("membership.points_plan", {"name": "年度积分计划", "code": "PY", "starts_on": f"{TODAY.year - 1}-01-01",
                                                              "ends_on": f"{TODAY.year + 1}-12-31", "expiry_rule": "never"}, SYSTEM)
    services.records.create("membership.point_item", {"plan": plan, "name": "消费积分", "kind": "consumption", "per_yuan": per_yuan}, SYSTEM)
    return plan


def make_member(services, n: int, level: int | None = None, status: str = "active") -> int:
    data = {"name": f"王小{chr(0x4e00 + n)}", "mobile": f"1390000{n:04d}", "joined_on": "2025-01-01", "status": status}
    if level:
        data["level"] = level
    return services.records.create("membership.member", data, SYSTEM)


def make_merchant(services, code: str, *, formal: bool = True, start: dt.date | None = None, end: dt.date | None = None, **extra) -> int:
    mid = services.records.create("alliance.merchant", {"name": f"商家{code}", "code": code, "category": "dining", "region": "east",
                                                        "fee_rate": "5", "point_value": "0.01", **extra}, SYSTEM)
    if formal:
        services.workflows.transition("alliance.merchant", mid, "approve", SYSTEM, {
            "contract_start": (start or TODAY - dt.timedelta(days=30)).isoformat(),
            "contract_end": (end or TODAY + dt.timedelta(days=365)).isoformat()})
    return mid


def make_offer(services, merchant: int, **fields) -> int:
    data = {"merchant": merchant, "name": "会员 9 折", "kind": "discount", "discount_rate": "10", "funded_by": "merchant",
            "valid_from": (TODAY - dt.timedelta(days=10)).isoformat(), "valid_until": (TODAY + dt.timedelta(days=10)).isoformat(), **fields}
    return services.records.create("alliance.offer", data, SYSTEM)


def earn(services, member: int, points: int, key: str) -> None:
    from crmkit.apps.membership.ledger import LedgerService

    LedgerService(services.engine).earn(member, points, key=key, actor=SYSTEM)
