"""``insert_rows``: many rows into one table in the caller's transaction, as fast as the database takes them.

PostgreSQL gets one ``COPY … FROM STDIN`` on the transaction's own connection: an executemany, even pipelined,
costs the server one statement per row, COPY one for all of them. Values go through each column type's bind
processor first (timezone-aware datetimes, JSON), exactly as an ``INSERT`` through SQLAlchemy would send them, and
a constraint violation comes back as SQLAlchemy's ``IntegrityError``, so callers handle both paths alike. Other
databases get a plain executemany (sqlite3 loops over the rows in C).
"""
from __future__ import annotations

from sqlalchemy import Connection, Table
from sqlalchemy.exc import IntegrityError


def insert_rows(conn: Connection, table: Table, rows: list[dict]) -> None:
    """Insert ``rows`` (dicts with the same keys) into ``table``; nothing is returned (give ids explicitly)."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), rows)
        return
    import psycopg

    dialect = conn.dialect
    names = list(rows[0])
    procs = [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
    quote = dialect.identifier_preparer.quote
    sql = f"COPY {dialect.identifier_preparer.format_table(table)} ({', '.join(quote(n) for n in names)}) FROM STDIN"
    raw = conn.connection.driver_connection  # the same connection, so the rows belong to the caller's transaction
    assert raw is not None  # an open Connection always has its DBAPI connection
    try:
        with raw.cursor() as cur, cur.copy(sql) as copy:
            for row in rows:
                copy.write_row([p(row[n]) if p is not None else row[n] for n, p in zip(names, procs)])
    except psycopg.errors.IntegrityError as exc:
        raise IntegrityError(sql, None, exc) from None
