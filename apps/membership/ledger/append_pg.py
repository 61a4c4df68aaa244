"""A posting's writes as one PostgreSQL statement: the entry, its lines, the balance moves, the lots it takes from,
the new lot, the outbox event and the audit entry.

A posting is CPU-bound in the client (each statement costs far more in SQLAlchemy and the driver than in the
database), so on PostgreSQL ``LedgerService._append`` sends these writes as one statement of data-modifying CTEs.
It writes exactly what the portable path writes statement by statement (SQLite runs that path; the ledger tests run
both). The entry's id is taken from its sequence beforehand (earn and redeem read it with the account lock), so the
outbox payload and the audit entry, whose hash covers it, can name it.

The entry is inserted ``ON CONFLICT (idempotency_key) DO NOTHING`` and every other write hangs on its row: a key that
was already used (even by a posting that committed while this one waited) writes nothing and returns no entry id.

A redeem also picks its lots here (``fifo``): the oldest open lots of the wallet, up to ``FIFO_LOTS`` of them, running
totals deciding what each gives, recorded in the entry's ``details.lots`` as ``_consume`` records them. The account is
locked by then, so the statement reads the lots as they are. When those lots hold less than the points (a wallet of
many small lots), nothing is written and the caller takes the lots with ``_consume`` instead.
"""
from __future__ import annotations

from functools import lru_cache

from sqlalchemy import BigInteger, Boolean, Integer, String, TextClause, bindparam, func, text
from sqlalchemy.dialects.postgresql import ARRAY

from crmkit.runtime.storage import platform_tables as pt
from crmkit.runtime.storage.types import UTCDateTime, json_type

from . import tables as t


class KeyAlreadyPosted(Exception):
    """The append found its idempotency key used and wrote nothing (the caller answers with the earlier entry)."""

# The next entry id (PostgreSQL): read with the account lock, or on its own for the rarer postings.
NEXT_ENTRY_ID = func.nextval(func.pg_get_serial_sequence(t.entry.name, "id"))

FIFO_LOTS = 64

# The audit entry's columns, bound as ``a_<column>`` (the values come from ``audit.service.pending_entry``).
AUDIT_COLUMNS = ("at", "actor_id", "category", "action", "entity", "record_id", "subject", "ip", "request_id", "changes", "payload_hash", "redacted")
_AUDIT_TYPES = {"at": UTCDateTime(), "actor_id": Integer(), "record_id": BigInteger(), "changes": json_type(), "redacted": Boolean()}


@lru_cache(maxsize=None)
def append_statement(lines: int, with_lot: bool, takes_lots: bool, fifo: bool = False) -> TextClause:
    """The statement for an entry with ``lines`` lines (``acc_i``/``amt_i``), ``with_lot`` a new lot, ``takes_lots`` the
    lots it consumes (``take_ids``/``take_points``), or ``fifo`` the lots it picks itself (``fifo_acc``/``fifo_points``).

    It returns the entry id (NULL when the key was taken) and, with ``fifo``, the points the picked lots hold."""
    rows = ", ".join(f"(CAST(:acc_{i} AS BIGINT), CAST(:amt_{i} AS BIGINT))" for i in range(lines))
    columns = ("INSERT INTO {t} (id, idempotency_key, kind, currency, member_id, amount, source_type, source_id, reversal_of, memo, details, "
               "created_at, created_by) ").format(t=t.entry.name)
    values = ":entry_id, :key, :kind, :currency, :member_id, :amount, :source_type, :source_id, :reversal_of, :memo, {details}, :now, :actor"
    conflict = " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id)"
    parts = []
    if fifo:
        parts += [
            f"ol AS (SELECT id, remaining FROM {t.lot.name} WHERE account_id = :fifo_acc AND remaining > 0 ORDER BY id LIMIT {FIFO_LOTS})",
            "oc AS (SELECT id, remaining, CAST(sum(remaining) OVER (ORDER BY id) AS BIGINT) AS upto FROM ol)",
            "tv AS (SELECT id, LEAST(remaining, :fifo_points - (upto - remaining)) AS points FROM oc WHERE upto - remaining < :fifo_points)",
            "pick AS (SELECT coalesce(sum(points), 0) AS got, coalesce(jsonb_agg(jsonb_build_array(id, points) ORDER BY id), '[]') AS lots FROM tv)",
            "e AS (" + columns + "SELECT " + values.format(details="CAST(:details AS JSONB) || jsonb_build_object('lots', pick.lots)")
            + " FROM pick WHERE pick.got = :fifo_points" + conflict,
            f"tk AS (UPDATE {t.lot.name} lt SET remaining = lt.remaining - tv.points FROM e, tv WHERE lt.id = tv.id)",
        ]
    else:
        parts.append("e AS (" + columns + "VALUES (" + values.format(details=":details") + ")" + conflict)
    parts += [
        f"o AS (INSERT INTO {pt.outbox.name} (created_at, topic, entity, record_id, payload) SELECT :now, :topic, :entity, :member_id, :payload FROM e)",
        f"a AS (INSERT INTO {pt.audit.name} ({', '.join(AUDIT_COLUMNS)}) SELECT {', '.join(f':a_{c}' for c in AUDIT_COLUMNS)} FROM e)",
    ]
    if lines:
        parts.append(f"v (acc, amount) AS (VALUES {rows})")
        parts.append(f"l AS (INSERT INTO {t.line.name} (entry_id, account_id, currency, amount) SELECT e.id, v.acc, :currency, v.amount FROM e, v)")
        # counter accounts keep balance NULL (tables.py), so only member accounts, already locked by this posting, are updated
        parts.append(f"b AS (UPDATE {t.account.name} a SET balance = a.balance + v.amount, updated_at = :now FROM e, v "
                     "WHERE a.id = v.acc AND a.balance IS NOT NULL)")
    if takes_lots:
        parts.append(f"tk AS (UPDATE {t.lot.name} lt SET remaining = lt.remaining - tv.points "
                     "FROM e, unnest(:take_ids, :take_points) AS tv (id, points) WHERE lt.id = tv.id)")
    if with_lot:
        parts.append(f"n AS (INSERT INTO {t.lot.name} (account_id, entry_id, amount, remaining, expires_at, created_at) "
                     "SELECT :lot_acc, e.id, :lot_amount, :lot_amount, :lot_expires, :now FROM e)")
    binds = [bindparam("entry_id", type_=BigInteger()), bindparam("key", type_=String()), bindparam("kind", type_=String()),
             bindparam("currency", type_=String()), bindparam("member_id", type_=BigInteger()), bindparam("amount", type_=BigInteger()),
             bindparam("source_type", type_=String()), bindparam("source_id", type_=String()), bindparam("reversal_of", type_=BigInteger()),
             bindparam("memo", type_=String()), bindparam("details", type_=json_type()), bindparam("now", type_=UTCDateTime()),
             bindparam("actor", type_=Integer()), bindparam("topic", type_=String()), bindparam("entity", type_=String()),
             bindparam("payload", type_=json_type())]
    binds += [bindparam(f"a_{c}", type_=_AUDIT_TYPES.get(c, String())) for c in AUDIT_COLUMNS]
    if takes_lots:
        binds += [bindparam("take_ids", type_=ARRAY(BigInteger())), bindparam("take_points", type_=ARRAY(BigInteger()))]
    if fifo:
        binds += [bindparam("fifo_acc", type_=BigInteger()), bindparam("fifo_points", type_=BigInteger())]
    if with_lot:
        binds += [bindparam("lot_acc", type_=BigInteger()), bindparam("lot_amount", type_=BigInteger()), bindparam("lot_expires", type_=UTCDateTime())]
    result = "SELECT (SELECT id FROM e), (SELECT got FROM pick)" if fifo else "SELECT (SELECT id FROM e), NULL"
    return text("WITH " + ", ".join(parts) + " " + result).bindparams(*binds)
