"""Reads and writes of ``crmkit_user_auth``: the session version and the last failed login of a user."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from .tables import user_auth


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def session_version(db, user_id: int) -> int:
    """``db`` is a SQLAlchemy Connection or Session."""
    value = db.execute(select(user_auth.c.session_version).where(user_auth.c.user_id == user_id)).scalar()
    return value or 0


def last_failed_at(db, user_id: int) -> dt.datetime | None:
    return db.execute(select(user_auth.c.last_failed_at).where(user_auth.c.user_id == user_id)).scalar()


def upsert(db, user_id: int, **values) -> None:
    """Insert or update the user's row in one statement (safe under concurrent logins)."""
    dialect = db.get_bind().dialect.name if hasattr(db, "get_bind") else db.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(user_auth).values(user_id=user_id, session_version=0, **values)
    db.execute(stmt.on_conflict_do_update(index_elements=[user_auth.c.user_id], set_=values))


def bump_session_version(db, user_id: int) -> None:
    """End every session of the user (their fingerprints no longer match)."""
    dialect = db.get_bind().dialect.name if hasattr(db, "get_bind") else db.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(user_auth).values(user_id=user_id, session_version=1)
    db.execute(stmt.on_conflict_do_update(index_elements=[user_auth.c.user_id],
                                          set_={"session_version": user_auth.c.session_version + 1}))
