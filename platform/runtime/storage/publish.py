"""Publishing definitions: save the documents and bring the tables in line, in an order that keeps every
running worker working.

Other processes switch to the new definitions when they see the new metadata stamp. If the stamp moved
before the new columns existed, they would query columns that are not there yet; if old columns went away
before the stamp moved, they would query columns that are gone. So a publish runs in three phases:

1. **Expand** (before the switch): new tables, new nullable columns and new indexes. The old definitions
   never look at them, so this is invisible to running workers. PostgreSQL indexes build CONCURRENTLY.
2. **Switch** (one transaction): the documents, the stamp, and the steps that change what existing names
   mean (renames, type changes, adopting a column, filling a new rollup). Both databases have
   transactional DDL, so workers see either the old definitions with the old schema or the new with the new.
3. **Contract** (after the switch): drops of columns, tables and indexes the new definitions no longer use.

An expand step that refers to a column a rename or type change also touches (an index on a renamed
column, a new column taking a renamed column's old name) stays in the switch with it, and a plan that
renames a table keeps everything in the switch and contract phases (an expand step may use the new name).
"""
from __future__ import annotations

from typing import Callable

from sqlalchemy import Engine

from ..meta.compile import RawDocument
from .plan import Plan, Planner, Step, refuse_unsafe

EXPANDING = frozenset({"create_table", "add_column", "create_index"})
CONTRACTING = frozenset({"drop_column", "drop_table", "drop_index"})
RENAMING = frozenset({"rename_table", "rename_column", "change_type", "adopt_column"})


def phases(plan: Plan) -> tuple[list[Step], list[Step], list[Step]]:
    """(expand, switch, contract) — each in the plan's own order."""
    changing = {(s.table, c) for s in plan.steps if s.op in RENAMING for c in s.touches}
    hoist = not any(s.op == "rename_table" for s in plan.steps)
    expand, switch, contract = [], [], []
    for step in plan.steps:
        if step.op in EXPANDING and hoist and not any((step.table, c) in changing for c in step.touches):
            expand.append(step)
        elif step.op in CONTRACTING or step.outside_transaction:
            contract.append(step)
        else:
            switch.append(step)
    return expand, switch, contract


def publish_documents(store, engine: Engine, docs: list[RawDocument], *, confirm: bool = False, actor_id: int | None = None,
                      comment: str = "", progress: Callable[[int, int, Step], None] | None = None,
                      plan: Plan | None = None) -> tuple[int, Plan]:
    """Validate, plan, refuse unconfirmed lossy steps, then expand → switch → contract. Returns (stamp, plan).

    ``plan`` is one the caller has just computed from ``store.preview(docs)`` (and shown or checked), so it
    is not computed twice; the documents are still validated here before any step runs (the store keeps
    the compiled preview, so that costs a hash of each document, not a second compile)."""
    preview = store.preview(docs)  # DefinitionError before anything happens
    if plan is None:
        plan = Planner(engine, preview).plan()
    refuse_unsafe(plan, confirm=confirm)
    expand, switch, contract = phases(plan)
    total, done = len(plan.steps), [0]

    def run(step: Step, conn) -> None:
        done[0] += 1
        if progress:
            progress(done[0], total, step)
        step.apply(conn)

    def run_switch(conn) -> None:
        for s in switch:
            run(s, conn)

    for step in expand:
        _run_alone(engine, step, run)
    stamp = store.save(docs, actor_id=actor_id, comment=comment, within=run_switch)
    for step in contract:
        _run_alone(engine, step, run)
    return stamp, plan


def _run_alone(engine: Engine, step: Step, run) -> None:
    if step.outside_transaction:
        with engine.connect() as conn:
            run(step, conn.execution_options(isolation_level="AUTOCOMMIT"))
    else:
        from ..db import write_transaction

        with write_transaction(engine) as conn:
            run(step, conn)
