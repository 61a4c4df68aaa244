"""A posting's writes as one PostgreSQL statement: the entry, its lines, the balance moves, the outbox event and the new lot.

A posting is CPU-bound in the client (each statement costs far more in SQLAlchemy and the driver than in the
database), so on PostgreSQL ``LedgerService._append`` sends these five writes as one statement of data-modifying
CTEs. It writes exactly what the portable path writes statement by statement (SQLite runs that path; the ledger
tests run both). The outbox payload gets the new entry's id inside the statement.
"""
from __future__ import annotations

from functools import lru_cache

from sqlalchemy import BigInteger, Integer, String, TextClause, bindparam, text

from crmkit.runtime.storage import platform_tables as pt
from crmkit.runtime.storage.types import UTCDateTime, json_type

from . import tables as t


@lru_cache(maxsize=None)
def append_statement(lines: int, with_lot: bool) -> TextClause:
    """The statement for an entry with ``lines`` lines (``acc_i``/``amt_i``) and, ``with_lot``, a new lot; returns the entry id."""
    rows = ", ".join(f"(CAST(:acc_{i} AS BIGINT), CAST(:amt_{i} AS BIGINT))" for i in range(lines))
    parts = [
        f"e AS (INSERT INTO {t.entry.name} (idempotency_key, kind, currency, member_id, amount, source_type, source_id, reversal_of, memo, "
        "details, created_at, created_by) VALUES (:key, :kind, :currency, :member_id, :amount, :source_type, :source_id, :reversal_of, :memo, "
        ":details, :now, :actor) RETURNING id)",
        f"o AS (INSERT INTO {pt.outbox.name} (created_at, topic, entity, record_id, payload) "
        f"SELECT :now, :topic, :entity, :member_id, CAST(:payload AS JSONB) || jsonb_build_object('entry', e.id) FROM e)",
    ]
    if lines:
        parts.append(f"v (acc, amount) AS (VALUES {rows})")
        parts.append(f"l AS (INSERT INTO {t.line.name} (entry_id, account_id, currency, amount) SELECT e.id, v.acc, :currency, v.amount FROM e, v)")
        # counter accounts keep balance NULL (tables.py), so only member accounts, already locked by this posting, are updated
        parts.append(f"b AS (UPDATE {t.account.name} a SET balance = a.balance + v.amount, updated_at = :now FROM v "
                     "WHERE a.id = v.acc AND a.balance IS NOT NULL)")
    if with_lot:
        parts.append(f"n AS (INSERT INTO {t.lot.name} (account_id, entry_id, amount, remaining, expires_at, created_at) "
                     "SELECT :lot_acc, e.id, :lot_amount, :lot_amount, :lot_expires, :now FROM e)")
    binds = [bindparam("key", type_=String()), bindparam("kind", type_=String()), bindparam("currency", type_=String()),
             bindparam("member_id", type_=BigInteger()), bindparam("amount", type_=BigInteger()), bindparam("source_type", type_=String()),
             bindparam("source_id", type_=String()), bindparam("reversal_of", type_=BigInteger()), bindparam("memo", type_=String()),
             bindparam("details", type_=json_type()), bindparam("now", type_=UTCDateTime()), bindparam("actor", type_=Integer()),
             bindparam("topic", type_=String()), bindparam("entity", type_=String()), bindparam("payload", type_=json_type())]
    if with_lot:
        binds += [bindparam("lot_acc", type_=BigInteger()), bindparam("lot_amount", type_=BigInteger()), bindparam("lot_expires", type_=UTCDateTime())]
    return text("WITH " + ", ".join(parts) + " SELECT id FROM e").bindparams(*binds)
