"""``record_events``: many audit entries in one statement, chained as ``record_event`` entries are.

A bulk write (an import batch) is already one long transaction, so it takes the chain head itself and writes its
entries sealed: sealing them afterwards would rewrite every row once more. Pending entries of other writers are
sealed after it commits. The rows go in with one COPY (PostgreSQL) or executemany; verification cannot tell the
difference.
"""
from __future__ import annotations

from sqlalchemy import Connection

from ..storage import platform_tables as pt
from ..storage.bulk_insert import insert_rows
from .seal import chain_rows, lock_head
from .service import check_event, entry_values
from .tables import audit_head

def record_events(conn: Connection, events: list[dict]) -> list[int]:
    """Append ``events`` (the keyword arguments of ``record_event``) in ``conn``'s transaction; returns their seqs."""
    if not events:
        return []
    for e in events:
        check_event(e["category"], e["action"])
    rows = [entry_values(e.get("changes") or {}, at=e.get("at"), actor_id=e.get("actor_id"), category=e["category"], action=e["action"],
                         entity=e.get("entity"), record_id=e.get("record_id"), subject=e.get("subject"), ip=e.get("ip"),
                         request_id=e.get("request_id")) for e in events]
    seq, prev = chain_rows(*lock_head(conn), rows)
    insert_rows(conn, pt.audit, rows)
    conn.execute(audit_head.update().where(audit_head.c.id == 1).values(seq=seq, hash=prev))
    return [r["seq"] for r in rows]
