"""``db.after_commit``: work that runs once after a write transaction commits, never after a rollback, never leaked."""
from __future__ import annotations

import pytest

from crmkit.runtime.db import after_commit, write_transaction


def test_runs_once_after_commit_and_never_after_rollback(base_services):
    engine, ran = base_services.engine, []

    def note(conn):
        ran.append(conn.in_transaction())

    with write_transaction(engine) as conn:
        assert after_commit(conn, note) and after_commit(conn, note)  # the same work registered twice runs once
        assert ran == []
    assert ran == [False]  # after the commit, outside any transaction
    with pytest.raises(RuntimeError):
        with write_transaction(engine) as conn:
            after_commit(conn, note)
            raise RuntimeError("the change failed")
    assert ran == [False]
    with write_transaction(engine) as conn:  # nothing from the rolled-back transaction is left on the pooled connection
        pass
    assert ran == [False]


def test_outside_a_write_transaction_it_says_so(base_services):
    with base_services.engine.begin() as conn:
        assert after_commit(conn, lambda c: None) is False
