"""Shared pieces for the points tests: a ledger on the app's engine, and invariant checks after each step."""
from __future__ import annotations

from sqlalchemy import func, select

from crmkit.apps.membership.ledger import LedgerService, check_invariants
from crmkit.apps.membership.ledger import tables as lt
from crmkit.runtime.actor import Actor


def ledger(services, **kw) -> LedgerService:
    return LedgerService(services.engine, **kw)


def staff(uid: int, name: str = "staff") -> Actor:
    return Actor(id=uid, username=f"{name}{uid}", is_admin=True)


def assert_sound(services) -> None:
    with services.engine.connect() as c:
        assert check_invariants(c) == []


def postings_snapshot(services) -> tuple[list, list]:
    with services.engine.connect() as c:
        entries = [tuple(r) for r in c.execute(select(lt.entry.c.id, lt.entry.c.idempotency_key, lt.entry.c.amount, lt.entry.c.kind).order_by(lt.entry.c.id))]
        lines = [tuple(r) for r in c.execute(select(lt.line.c.id, lt.line.c.entry_id, lt.line.c.account_id, lt.line.c.amount).order_by(lt.line.c.id))]
    return entries, lines


def entry_count(services, **where) -> int:
    with services.engine.connect() as c:
        q = select(func.count()).select_from(lt.entry)
        for k, v in where.items():
            q = q.where(lt.entry.c[k] == v)
        return c.execute(q).scalar_one()


def make_member(services, name="张伟", mobile="13800138000", level=None) -> int:
    from crmkit.runtime.actor import SYSTEM

    data = {"name": name, "mobile": mobile, "joined_on": "2026-01-01"}
    if level:
        data["level"] = level
    return services.records.create("membership.member", data, SYSTEM)


def make_plan(services, *, per_yuan="1", rounding="floor", expiry_rule="never", items=None, **plan_fields) -> int:
    """A plan covering 2026 with one consumption item (or ``items``); returns the plan id."""
    from crmkit.runtime.actor import SYSTEM

    plan = services.records.create("membership.points_plan", {"name": "2026 年度积分计划", "code": "P2026", "starts_on": "2026-01-01",
                                                              "ends_on": "2026-12-31", "expiry_rule": expiry_rule, **plan_fields}, SYSTEM)
    for item in items or [{"name": "消费积分", "kind": "consumption", "per_yuan": per_yuan, "rounding": rounding}]:
        services.records.create("membership.point_item", {"plan": plan, **item}, SYSTEM)
    return plan
