"""Named leases: one holder at a time, taken and renewed with a conditional UPDATE, expiring on their own.

Used where exactly one process may do something at a time (the outbox dispatcher keeps per-record order).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, or_, select
from sqlalchemy.exc import IntegrityError

from ..db import write_transaction
from ..storage import platform_tables as pt


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def acquire(engine: Engine, name: str, holder: str, seconds: float) -> bool:
    """Take (or renew) the lease; False while another holder's lease has not expired."""
    now = _now()
    until = now + dt.timedelta(seconds=seconds)
    with write_transaction(engine) as conn:
        n = conn.execute(pt.lease.update().where(pt.lease.c.name == name, or_(pt.lease.c.holder == holder, pt.lease.c.holder.is_(None),
                                                                                pt.lease.c.expires_at < now))
                         .values(holder=holder, expires_at=until)).rowcount
        if n == 1:
            return True
        if conn.execute(select(pt.lease.c.name).where(pt.lease.c.name == name)).first() is not None:
            return False
        try:
            with conn.begin_nested():
                conn.execute(pt.lease.insert().values(name=name, holder=holder, expires_at=until))
            return True
        except IntegrityError:
            return False


def release(engine: Engine, name: str, holder: str) -> None:
    with write_transaction(engine) as conn:
        conn.execute(pt.lease.update().where(pt.lease.c.name == name, pt.lease.c.holder == holder).values(holder=None, expires_at=None))
