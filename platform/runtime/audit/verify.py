"""Verification of the audit chain: finds modified, deleted, inserted and reordered entries.

Walks the entries in ``seq`` order from the retention anchor, recomputing every hash. A redacted
entry (personal data erased) cannot have its payload re-hashed, so it must be named by a later
erasure entry instead; that entry is itself chained.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from sqlalchemy import Connection, func, select

from ..storage import platform_tables as pt
from .chain import entry_hash, payload_hash
from .tables import GENESIS_HASH, audit_head

BATCH = 1000


@dataclass
class Problem:
    seq: int | None
    entry_id: int | None
    message: str

    def __str__(self) -> str:
        where = f"entry #{self.seq}" if self.seq is not None else f"row id {self.entry_id}"
        return f"{where}: {self.message}"


@dataclass
class VerifyReport:
    checked: int = 0
    pending: int = 0  # entries not chained yet (written moments ago; see ``seal``): not a problem, checked next time
    first_seq: int | None = None
    last_seq: int | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(conn: Connection, *, max_problems: int = 100) -> VerifyReport:
    report = VerifyReport()
    head: Mapping[Any, Any] | None = conn.execute(select(audit_head).where(audit_head.c.id == 1)).mappings().first()
    if head is None:
        head = {"seq": 0, "hash": GENESIS_HASH, "anchor_seq": 0, "anchor_hash": GENESIS_HASH}
    a = pt.audit
    report.pending = conn.execute(select(func.count()).select_from(a).where(a.c.seq.is_(None))).scalar_one()
    expected, prev = head["anchor_seq"] + 1, head["anchor_hash"]
    report.first_seq = expected
    redacted: set[int] = set()
    covered: set[int] = set()
    last_purge_anchor = None
    after = head["anchor_seq"]
    while True:
        rows = conn.execute(select(a).where(a.c.seq > after).order_by(a.c.seq).limit(BATCH)).mappings().all()
        if not rows:
            break
        for r in rows:
            report.checked += 1
            if r["seq"] != expected:
                report.problems.append(Problem(r["seq"], r["id"], f"expected entry #{expected} here: entries #{expected}..#{r['seq'] - 1} are missing"))
            if r["prev_hash"] != prev:
                report.problems.append(Problem(r["seq"], r["id"], "does not link to the previous entry (deleted, inserted or reordered entries)"))
            if r["payload_hash"] is None:
                report.problems.append(Problem(r["seq"], r["id"], "written outside the audit service (it has no payload hash)"))
            elif r["redacted"]:
                redacted.add(r["seq"])
            elif payload_hash(r["changes"]) != r["payload_hash"]:
                report.problems.append(Problem(r["seq"], r["id"], "its details were modified"))
            if entry_hash(prev, r, r["payload_hash"] or "") != r["hash"]:
                report.problems.append(Problem(r["seq"], r["id"], "its fields were modified (hash mismatch)"))
            if r["category"] == "privacy" and r["action"] == "erase":
                covered.update(int(s) for s in (r["changes"] or {}).get("redacted_entries", []))
            if r["category"] == "audit" and r["action"] == "purge":
                last_purge_anchor = ((r["changes"] or {}).get("anchor_seq"), (r["changes"] or {}).get("anchor_hash"))
            prev, expected = r["hash"], r["seq"] + 1
            report.last_seq = r["seq"]
            if len(report.problems) >= max_problems:
                return report
        after = rows[-1]["seq"]
    if head["seq"] != expected - 1 or head["hash"] != prev:
        report.problems.append(Problem(head["seq"], None, f"the newest entry is missing (the chain head says #{head['seq']}, the log ends at #{expected - 1})"))
    for s in sorted(redacted - covered):
        report.problems.append(Problem(s, None, "redacted without an erasure entry naming it"))
    if head["anchor_seq"] and last_purge_anchor != (head["anchor_seq"], head["anchor_hash"]):
        report.problems.append(Problem(head["anchor_seq"], None, "the retention anchor does not match the last purge entry"))
    return report
