"""Sealing: giving pending audit entries their place in the chain (``seq``, ``prev_hash``, ``hash``).

``record_event`` writes an entry inside the business transaction without touching the chain head, so concurrent
transactions (two cashiers posting points) never queue on it. The entry is sealed afterwards, in ``id`` order,
by whoever holds the head lock:

- on SQLite, at once, in the writer's own transaction (its write lock is held anyway);
- on PostgreSQL, right after the writer's transaction commits (``seal_after_commit``), in a short transaction of
  its own. Only one sealer works at a time; the others skip (``FOR UPDATE SKIP LOCKED``) because the one that
  holds the lock looks again after it commits, so an entry committed while it worked is never left behind;
- the worker's minute tick (``seal_now``) catches entries written outside ``write_transaction``.

A seal that is lost in a crash loses nothing: its entries simply stay pending and the next seal takes them, which is
why the seal transaction may skip the wait for its WAL flush. The chain order is the seal order; ``at`` is when the
change happened.
"""
from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine, bindparam, select, text

from ..db import after_commit, is_sqlite, write_transaction
from ..storage import platform_tables as pt
from .chain import entry_hash
from .tables import GENESIS_HASH, audit_head

log = logging.getLogger(__name__)

BATCH = 500
_CHAINED = (pt.audit.c.id, pt.audit.c.at, pt.audit.c.actor_id, pt.audit.c.category, pt.audit.c.action, pt.audit.c.entity,
            pt.audit.c.record_id, pt.audit.c.subject, pt.audit.c.ip, pt.audit.c.request_id, pt.audit.c.payload_hash)
_SEAL = (pt.audit.update().where(pt.audit.c.id == bindparam("b_id"))
         .values(seq=bindparam("b_seq"), prev_hash=bindparam("b_prev"), hash=bindparam("b_hash")))


def lock_head(conn: Connection, *, wait: bool = True) -> tuple[int, str] | None:
    """Take the chain-head lock for the rest of ``conn``'s transaction; returns (last seq, last hash).

    With ``wait=False`` returns None instead of waiting when another transaction holds it. On PostgreSQL the
    holder also seals after it commits (see the module docstring), so entries are never stranded behind it.
    """
    q = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
    if not is_sqlite(conn):
        q = q.with_for_update(skip_locked=not wait)
    row = conn.execute(q).first()
    if row is None:
        if conn.execute(select(audit_head.c.id).where(audit_head.c.id == 1)).first() is not None:
            return None  # it exists, so it is locked
        # a database created without the 0004 migration's seed row
        conn.execute(audit_head.insert().values(id=1, seq=0, hash=GENESIS_HASH, anchor_seq=0, anchor_hash=GENESIS_HASH))
        row = conn.execute(q).one()
    if not is_sqlite(conn):
        after_commit(conn, seal_after_commit)
    return int(row[0]), row[1]


def chain_rows(seq: int, prev: str, rows: list[dict]) -> tuple[int, str]:
    """Give ``rows`` (entries with the chained fields and ``payload_hash``) consecutive places after (seq, prev), in order."""
    for r in rows:
        seq += 1
        r["seq"], r["prev_hash"] = seq, prev
        r["hash"] = prev = entry_hash(prev, r, r["payload_hash"] or "")
    return seq, prev


def seal_pending(conn: Connection, *, wait: bool = True) -> int | None:
    """Chain every pending entry ``conn`` can see, in ``id`` order, inside ``conn``'s transaction.

    Returns how many were sealed, or None when ``wait=False`` and another sealer holds the head.
    """
    head = lock_head(conn, wait=wait)
    if head is None:
        return None
    seq, prev = head
    a, total = pt.audit, 0
    while True:
        rows = [dict(r) for r in conn.execute(select(*_CHAINED).where(a.c.seq.is_(None)).order_by(a.c.id).limit(BATCH)).mappings()]
        if not rows:
            break
        seq, prev = chain_rows(seq, prev, rows)
        conn.execute(_SEAL, [{"b_id": r["id"], "b_seq": r["seq"], "b_prev": r["prev_hash"], "b_hash": r["hash"]} for r in rows])
        total += len(rows)
    if total:
        conn.execute(audit_head.update().where(audit_head.c.id == 1).values(seq=seq, hash=prev))
    return total


def has_pending(conn: Connection) -> bool:
    return conn.execute(select(pt.audit.c.id).where(pt.audit.c.seq.is_(None)).limit(1)).first() is not None


def seal_after_commit(conn: Connection) -> None:
    """Seal what is pending in short transactions of our own until nothing is left or another sealer has the head."""
    try:
        while True:
            with conn.begin():
                conn.execute(text("SET LOCAL synchronous_commit TO OFF"))  # a lost seal is redone (module docstring)
                if seal_pending(conn, wait=False) is None:
                    return  # the holder looks again after its commit
            with conn.begin():
                if not has_pending(conn):
                    return
    except Exception:  # noqa: BLE001 - the audited change has committed; its entry stays pending for the next seal
        log.exception("sealing audit entries failed; they stay pending until the next seal")


def seal_now(engine: Engine) -> int:
    """Seal every committed pending entry (the worker's minute tick, verification, the CLI)."""
    with write_transaction(engine) as conn:
        return seal_pending(conn) or 0
