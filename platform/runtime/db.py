"""Engines and transactions for SQLite (embedded) and PostgreSQL (production).

SQLite runs in WAL mode with foreign keys on, and every write transaction
starts with ``BEGIN IMMEDIATE`` so that concurrent writers queue on the lock
instead of failing half-way through with ``database is locked``.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import Connection, CursorResult, Engine, create_engine, event
from sqlalchemy.engine import make_url


def is_sqlite(engine_or_conn) -> bool:
    return engine_or_conn.dialect.name == "sqlite"


def make_engine(url: str, **kwargs) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, and transactions we begin ourselves (pysqlite's own are unreliable)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection):
        mode = conn.info.pop("crmkit_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


AFTER_COMMIT = "crmkit_after_commit"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction for writes: ``BEGIN IMMEDIATE`` on SQLite, a plain one elsewhere.

    Work registered with ``after_commit`` runs on the same connection once the transaction has committed.
    """
    with engine.connect() as conn:
        if is_sqlite(conn):
            conn.info["crmkit_begin"] = "IMMEDIATE"
        conn.info[AFTER_COMMIT] = []
        try:
            with conn.begin():
                yield conn
            for fn in conn.info.pop(AFTER_COMMIT, []):
                fn(conn)
        finally:
            conn.info.pop(AFTER_COMMIT, None)  # ``info`` outlives this checkout: never leave work behind for the next user


def after_commit(conn: Connection, fn: Callable[[Connection], None]) -> bool:
    """Run ``fn(conn)`` once after the ``write_transaction`` that ``conn`` is in commits (never after a rollback).

    Returns False when ``conn`` is not in one (a plain ``engine.begin()``): the caller needs its own fallback then.
    ``fn`` runs outside any transaction and must not raise: the change it follows has already committed.
    """
    hooks = conn.info.get(AFTER_COMMIT)
    if hooks is None:
        return False
    if fn not in hooks:
        hooks.append(fn)
    return True


def inserted_id(result: CursorResult[Any]) -> int:
    """The primary key of the row a single-row INSERT added. SQLAlchemy types ``inserted_primary_key`` as Optional
    (it is None for statements that are not inserts), so this says what the callers know."""
    key = result.inserted_primary_key
    if key is None:
        raise TypeError("inserted_id() needs the result of an INSERT")
    return key[0]


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        with conn.begin():
            yield conn
