"""Sealing: giving pending audit entries their place in the chain (``seq``, ``prev_hash``, ``hash``).

``record_event`` writes an entry inside the business transaction without touching the chain head, so concurrent
transactions (two cashiers posting points) never queue on it. The entry is sealed afterwards, in ``id`` order,
by whoever holds the head lock:

- on SQLite, at once, in the writer's own transaction (its write lock is held anyway);
- on PostgreSQL, right after the writer's transaction commits, by its process's background sealer (``sealer.py``
  runs ``seal_if_free``) in a short transaction of its own. Only one sealer works at a time (``FOR UPDATE SKIP
  LOCKED``): a background sealer that finds the head taken tries again shortly, and a transaction that held the
  head itself (``lock_head``: bulk writes, retention) looks again after it commits (``seal_after_commit``), so an
  entry committed while another sealer worked is never left behind;
- the worker's minute tick (``seal_now``) catches entries written outside ``write_transaction``.

A seal that is lost in a crash loses nothing: its entries simply stay pending and the next seal takes them, which is
why the seal transaction may skip the wait for its WAL flush. The chain order is the seal order; ``at`` is when the
change happened.
"""
from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine, bindparam, func, select, true

from ..db import after_commit, is_sqlite, write_transaction
from ..storage import platform_tables as pt
from .chain import entry_hash
from .tables import GENESIS_HASH, audit_head

log = logging.getLogger(__name__)

BATCH = 500
_A = pt.audit
_CHAINED = (_A.c.id, _A.c.at, _A.c.actor_id, _A.c.category, _A.c.action, _A.c.entity, _A.c.record_id, _A.c.subject, _A.c.ip, _A.c.request_id,
            _A.c.payload_hash)
# Built once: the seal runs after every audited commit, and building statements costs more CPU than running them.
_HEAD = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
_HEAD_WAIT = _HEAD.with_for_update()
# After a commit: take the head if free and, in the same round trip, let this transaction skip its WAL-flush wait
# (``set_config(…, true)`` is ``SET LOCAL``; a lost seal is redone, see the module docstring).
_HEAD_SKIP_NO_FLUSH_WAIT = _HEAD.add_columns(func.set_config("synchronous_commit", "off", true())).with_for_update(skip_locked=True)
_HEAD_MOVE = audit_head.update().where(audit_head.c.id == 1).values(seq=bindparam("b_seq"), hash=bindparam("b_hash"))
_PENDING = select(*_CHAINED).where(_A.c.seq.is_(None)).order_by(_A.c.id).limit(BATCH)
_ANY_PENDING = select(_A.c.id).where(_A.c.seq.is_(None)).limit(1)
_SEAL = _A.update().where(_A.c.id == bindparam("b_id")).values(seq=bindparam("b_seq"), prev_hash=bindparam("b_prev"), hash=bindparam("b_hash"))


def lock_head(conn: Connection) -> tuple[int, str]:
    """Take the chain-head lock for the rest of ``conn``'s transaction, waiting for it; returns (last seq, last hash).

    On PostgreSQL the holder also seals after it commits (see the module docstring), so entries are never stranded behind it.
    """
    sqlite = is_sqlite(conn)
    q = _HEAD if sqlite else _HEAD_WAIT
    row = conn.execute(q).first()
    if row is None:  # a database created without the 0004 migration's seed row
        conn.execute(audit_head.insert().values(id=1, seq=0, hash=GENESIS_HASH, anchor_seq=0, anchor_hash=GENESIS_HASH))
        row = conn.execute(q).one()
    if not sqlite:
        after_commit(conn, seal_after_commit)
    return int(row[0]), row[1]


def chain_rows(seq: int, prev: str, rows: list[dict]) -> tuple[int, str]:
    """Give ``rows`` (entries with the chained fields and ``payload_hash``) consecutive places after (seq, prev), in order."""
    for r in rows:
        seq += 1
        r["seq"], r["prev_hash"] = seq, prev
        r["hash"] = prev = entry_hash(prev, r, r["payload_hash"] or "")
    return seq, prev


def seal_pending(conn: Connection) -> int:
    """Chain every pending entry ``conn`` can see, in ``id`` order, inside ``conn``'s transaction; returns how many."""
    return _seal_after(conn, lock_head(conn))


def _seal_after(conn: Connection, head: tuple[int, str]) -> int:
    seq, prev = head
    total = 0
    while True:
        rows = [dict(r) for r in conn.execute(_PENDING).mappings()]
        if not rows:
            break
        seq, prev = chain_rows(seq, prev, rows)
        conn.execute(_SEAL, [{"b_id": r["id"], "b_seq": r["seq"], "b_prev": r["prev_hash"], "b_hash": r["hash"]} for r in rows])
        total += len(rows)
        if len(rows) < BATCH:
            break  # anything committed since is found by the holder's look after its commit
    if total:
        conn.execute(_HEAD_MOVE, {"b_seq": seq, "b_hash": prev})
    return total


def has_pending(conn: Connection) -> bool:
    return conn.execute(_ANY_PENDING).first() is not None


def seal_if_free(conn: Connection) -> bool:
    """Seal what is pending in one short transaction if the head is free; False if another sealer holds it.

    The background sealer's pass (``sealer.py``): when the head is taken it tries again shortly, so that it reads the
    pending entries at least once after it was woken."""
    with conn.begin():
        row = conn.execute(_HEAD_SKIP_NO_FLUSH_WAIT).first()
        if row is None:
            return False
        _seal_after(conn, (int(row[0]), row[1]))
    return True


def seal_after_commit(conn: Connection) -> None:
    """Seal what is pending in short transactions of our own until nothing is left or another sealer has the head.

    Finding the head taken (or missing: ``seal_now`` creates it) costs one statement; the holder looks again after it commits."""
    try:
        while True:
            with conn.begin():
                row = conn.execute(_HEAD_SKIP_NO_FLUSH_WAIT).first()
                if row is None:
                    return
                _seal_after(conn, (int(row[0]), row[1]))
            with conn.begin():
                if not has_pending(conn):
                    return
    except Exception:  # noqa: BLE001 - the audited change has committed; its entry stays pending for the next seal
        log.exception("sealing audit entries failed; they stay pending until the next seal")


def seal_now(engine: Engine) -> int:
    """Seal every committed pending entry (the worker's minute tick, verification, the CLI)."""
    with write_transaction(engine) as conn:
        return seal_pending(conn) or 0
