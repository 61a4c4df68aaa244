"""The background sealer: on PostgreSQL a write does not seal its audit entry itself; its process's sealer does, right after."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import event, select

from crmkit.runtime.audit import flush_sealer, record_event, record_event_now
from crmkit.runtime.audit.sealer import sealer_for
from crmkit.runtime.db import write_transaction
from crmkit.runtime.storage import platform_tables as pt

A = pt.audit


def seq_of(engine, entry_id):
    with engine.connect() as conn:
        return conn.execute(select(A.c.seq).where(A.c.id == entry_id)).scalar_one()


def wait_sealed(engine, entry_id, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seq = seq_of(engine, entry_id)
        if seq is not None:
            return seq
        time.sleep(0.02)
    return None


@pytest.mark.postgres_only
def test_the_writer_does_not_seal_and_its_entry_is_sealed_right_after_without_asking(base_services):
    engine = base_services.engine
    seen: list[tuple[str, str]] = []

    def note(conn, cursor, statement, params, context, many):
        seen.append((threading.current_thread().name, statement))

    event.listen(engine, "before_cursor_execute", note)
    try:
        entry_id = record_event_now(engine, category="export", action="export", actor_id=1, changes={"rows": 3})
        writer = threading.current_thread().name
        assert wait_sealed(engine, entry_id) is not None  # nobody called a seal: the background sealer did
    finally:
        event.remove(engine, "before_cursor_execute", note)
    mine = [s for thread, s in seen if thread == writer and "crmkit_audit_head" in s]
    sealer = [s for thread, s in seen if thread == "crmkit-audit-sealer" and "crmkit_audit_head" in s]
    assert mine == [] and sealer  # the chain head was touched by the sealer thread only


@pytest.mark.postgres_only
def test_many_writers_are_sealed_in_few_seals_and_the_chain_stays_gap_free(base_services):
    engine = base_services.engine
    heads: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cur, statement, params, ctx, many: heads.append(statement) if "UPDATE crmkit_audit_head" in statement else None)

    def writer(n):
        for i in range(25):
            record_event_now(engine, category="export", action="export", actor_id=n, changes={"n": n, "i": i})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert flush_sealer(engine)
    with engine.connect() as conn:
        seqs = conn.execute(select(A.c.seq).order_by(A.c.seq)).scalars().all()
    assert None not in seqs and seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 200
    assert len(heads) < 200  # one seal chained several entries at a time


@pytest.mark.postgres_only
def test_a_rolled_back_write_wakes_no_sealer_and_leaves_no_entry(base_services):
    engine = base_services.engine
    before = sealer_for(engine).flush() and audit_count(engine)
    with pytest.raises(RuntimeError):
        with write_transaction(engine) as conn:
            record_event(conn, category="export", action="export", changes={"rows": 1})
            raise RuntimeError("the change failed")
    assert flush_sealer(engine) and audit_count(engine) == before


def audit_count(engine):
    with engine.connect() as conn:
        return len(conn.execute(select(A.c.id)).all())


@pytest.mark.postgres_only
def test_a_process_that_exits_right_after_writing_leaves_its_entry_sealed(base_services):
    """The sealer threads are daemons: at interpreter exit the process waits for the seals it asked for."""
    url = base_services.engine.url.render_as_string(hide_password=False)
    code = ("import sys\nfrom crmkit.runtime.db import make_engine\nfrom crmkit.runtime.audit import record_event_now\n"
            "engine = make_engine(sys.argv[1])\nprint(record_event_now(engine, category='export', action='export', changes={'rows': 9}))\n")
    out = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    assert seq_of(base_services.engine, int(out.stdout.strip())) is not None  # sealed before the process ended, not by us


@pytest.mark.postgres_only
def test_a_forked_child_seals_with_a_sealer_of_its_own(base_services):
    engine = base_services.engine
    first = record_event_now(engine, category="export", action="export", changes={"rows": 1})  # the parent's sealer thread exists now
    assert wait_sealed(engine, first) is not None
    engine.dispose(close=False)  # the child must not share the parent's connections
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            entry = record_event_now(engine, category="export", action="export", changes={"rows": 2})
            sealed = sealer_for(engine).flush(10)
            os.write(write, f"{entry} {sealed}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    reply = os.read(read, 100).decode().split()
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0 and reply[1] == "True"
    assert seq_of(engine, int(reply[0])) is not None


@pytest.mark.postgres_only
def test_the_sealer_thread_ends_when_idle_and_a_later_write_starts_it_again(base_services, monkeypatch):
    from crmkit.runtime.audit import sealer as sealer_module

    monkeypatch.setattr(sealer_module, "IDLE_SECONDS", 0.05)
    engine = base_services.engine
    first = record_event_now(engine, category="export", action="export", changes={"rows": 1})
    assert wait_sealed(engine, first) is not None
    deadline = time.monotonic() + 5
    while any(t.name == "crmkit-audit-sealer" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(t.name == "crmkit-audit-sealer" for t in threading.enumerate())
    second = record_event_now(engine, category="export", action="export", changes={"rows": 2})
    assert wait_sealed(engine, second) is not None


def test_an_entry_is_sealed_at_once_on_sqlite_and_by_the_flush_on_postgresql(base_services):
    engine = base_services.engine
    entry_id = record_event_now(engine, category="export", action="export", changes={"rows": 1})
    if engine.dialect.name == "sqlite":
        assert seq_of(engine, entry_id) is not None  # in the writer's own transaction: no thread, nothing to wait for
        assert flush_sealer(engine) and not any(t.name == "crmkit-audit-sealer" for t in threading.enumerate())
    else:
        assert flush_sealer(engine) and seq_of(engine, entry_id) is not None
