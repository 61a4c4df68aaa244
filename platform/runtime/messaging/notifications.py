"""In-app notifications: a row per user and message; the bell shows the unread count."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, func, select

from ..db import inserted_id, read_transaction, write_transaction
from ..storage import platform_tables as pt

n = pt.notification


def create_notification(engine: Engine, user_id: int, title: str, body: str, url: str | None = None) -> int:
    with write_transaction(engine) as conn:
        return inserted_id(conn.execute(n.insert().values(user_id=user_id, title=(title or body)[:200], body=body, url=url,
                                                          created_at=dt.datetime.now(dt.timezone.utc))))


def unread_count(engine: Engine, user_id: int) -> int:
    with read_transaction(engine) as conn:
        return conn.execute(select(func.count()).select_from(n).where(n.c.user_id == user_id, n.c.read_at.is_(None))).scalar_one()


def list_notifications(engine: Engine, user_id: int, *, limit: int = 100) -> list[dict]:
    with read_transaction(engine) as conn:
        return [dict(r) for r in conn.execute(select(n).where(n.c.user_id == user_id).order_by(n.c.id.desc()).limit(limit)).mappings()]


def mark_read(engine: Engine, user_id: int, notification_id: int | None = None) -> int:
    """Mark one (or, without an id, every) unread notification of the user as read; another user's rows are untouched."""
    where = [n.c.user_id == user_id, n.c.read_at.is_(None)]
    if notification_id is not None:
        where.append(n.c.id == notification_id)
    with write_transaction(engine) as conn:
        return conn.execute(n.update().where(*where).values(read_at=dt.datetime.now(dt.timezone.utc))).rowcount
