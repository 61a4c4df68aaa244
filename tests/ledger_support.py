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
