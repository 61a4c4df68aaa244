"""The hash-chained audit log: record_event, verification that finds tampering, retention purge, CLI."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from alembic import command
from alembic.config import Config
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select, text, update

from crmkit.migrations import SCRIPT_LOCATION
from crmkit.runtime.audit import flush_sealer, record_event, record_event_now, seal_now, seal_pending
from crmkit.runtime.audit.retention import purge_before
from crmkit.runtime.audit.tables import audit_head
from crmkit.runtime.audit.verify import verify_chain
from crmkit.runtime.cli import main
from crmkit.runtime.config import ConfigError, Settings
from crmkit.runtime.db import read_transaction, write_transaction
from crmkit.runtime.storage import platform_tables as pt

A = pt.audit


def verify(services):
    flush_sealer(services.engine)  # PostgreSQL seals in the background right after each commit
    with read_transaction(services.engine) as conn:
        return verify_chain(conn)


def entries(services):
    flush_sealer(services.engine)
    with services.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(A).order_by(A.c.seq)).mappings()]


def add_events(services, n, **kw):
    return [record_event_now(services.engine, category="export", action="export", actor_id=1, entity="membership.member",
                             changes={"rows": i, **kw}) for i in range(n)]


def tamper(services, stmt):
    with services.engine.begin() as conn:
        conn.execute(stmt)


def cli_env(services, tmp_path, **extra):
    return {"CRMKIT_DATABASE_URL": services.settings.database_url, "CRMKIT_VAR_DIR": str(tmp_path / "var"),
            "CRMKIT_SECRET_KEY": "x" * 40, **extra}


def test_record_changes_and_events_are_chained_in_order(services, actor):
    rid = services.records.create("membership.level", {"name": "金卡", "code": "GOLD", "level_value": 3}, actor, request_id="r-1")
    services.records.update("membership.level", rid, {"name": "金卡会员"}, actor, expected_version=1)
    entry_id = record_event_now(services.engine, category="unmask", action="unmask", actor_id=1, entity="membership.member", record_id=7,
                                changes={"field": "mobile"}, ip="10.0.0.1")
    rows = entries(services)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))  # sealed at once on SQLite, right after the commit on PostgreSQL
    assert rows[-1]["id"] == entry_id
    assert rows[0]["prev_hash"] == "0" * 64
    for prev, cur in zip(rows, rows[1:]):
        assert cur["prev_hash"] == prev["hash"]
    mine = [r for r in rows if r["entity"] == "membership.level" and r["record_id"] == rid]
    assert [(r["category"], r["action"], r["changes"]) for r in mine] == [
        ("record", "create", {"name": [None, "金卡"], "code": [None, "GOLD"], "level_value": [None, 3]}),
        ("record", "update", {"name": ["金卡", "金卡会员"]}),
    ]
    assert mine[0]["request_id"] == "r-1"
    assert (rows[-1]["category"], rows[-1]["subject"], rows[-1]["ip"], rows[-1]["changes"]) == ("unmask", None, "10.0.0.1", {"field": "mobile"})
    report = verify(services)
    assert report.ok, report.problems
    assert report.checked == len(rows)
    with services.engine.connect() as conn:
        head = conn.execute(select(audit_head)).mappings().one()
    assert (head["seq"], head["hash"]) == (rows[-1]["seq"], rows[-1]["hash"])


def test_builder_publishes_are_audited(services):
    rows = [r for r in entries(services) if r["category"] == "publish"]
    # installing the membership template published its documents through MetadataStore.save
    assert rows and {r["action"] for r in rows} == {"publish"}
    assert any(r["subject"] == "entity:membership.member" and r["changes"]["version"] == 1 for r in rows)


def test_an_entry_rolls_back_with_its_transaction(services):
    add_events(services, 2)
    before = entries(services)
    with pytest.raises(RuntimeError):
        with write_transaction(services.engine) as conn:
            record_event(conn, category="permission", action="grant", actor_id=1, changes={"role": "Sales-rolled-back"})
            raise RuntimeError("the change failed")
    rows = entries(services)
    assert rows == before  # nothing of the failed change was kept (the template's own role grants are older entries)
    assert not any((r["changes"] or {}).get("role") == "Sales-rolled-back" for r in rows)
    add_events(services, 1)
    assert entries(services)[-1]["seq"] == rows[-1]["seq"] + 1  # the sequence number was not used up
    assert verify(services).ok


def test_bad_arguments_are_refused_without_writing(services):
    before = len(entries(services))
    with pytest.raises(ValueError, match="unknown audit category"):
        record_event_now(services.engine, category="gossip", action="x")
    with pytest.raises(ValueError, match="1-32 characters"):
        record_event_now(services.engine, category="auth", action="")
    assert len(entries(services)) == before


@pytest.mark.parametrize("attack", ["payload", "actor", "time", "delete_middle", "delete_last", "reorder", "insert", "unflagged_redaction"])
def test_verify_detects_tampering(services, attack):
    seqs = add_events(services, 5)
    assert verify(services).ok
    target = seqs[2]
    if attack == "payload":
        tamper(services, update(A).where(A.c.seq == target).values(changes={"rows": 999}))
        expected = "details were modified"
    elif attack == "actor":
        tamper(services, update(A).where(A.c.seq == target).values(actor_id=42))
        expected = "hash mismatch"
    elif attack == "time":
        tamper(services, update(A).where(A.c.seq == target).values(at=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)))
        expected = "hash mismatch"
    elif attack == "delete_middle":
        tamper(services, A.delete().where(A.c.seq == target))
        expected = "missing"
    elif attack == "delete_last":
        tamper(services, A.delete().where(A.c.seq == seqs[-1]))
        expected = "newest entry is missing"
    elif attack == "reorder":  # swap two entries' positions
        tamper(services, update(A).where(A.c.seq == target).values(seq=-1))
        tamper(services, update(A).where(A.c.seq == target + 1).values(seq=target))
        tamper(services, update(A).where(A.c.seq == -1).values(seq=target + 1))
        expected = "does not link"
    elif attack == "insert":
        tamper(services, A.insert().values(at=dt.datetime.now(dt.timezone.utc), category="auth", action="login", changes={}))
        assert verify(services).pending == 1  # not chained yet: the next seal takes any pending row...
        seal_now(services.engine)
        expected = "outside the audit service"  # ...and verification names the one record_event did not write
    else:  # hiding a modification behind the redaction flag
        tamper(services, update(A).where(A.c.seq == target).values(changes={"rows": "[erased]"}, redacted=True))
        expected = "without an erasure entry"
    report = verify(services)
    assert not report.ok
    assert any(expected in p.message for p in report.problems), [str(p) for p in report.problems]


def test_cli_verify_reports_ok_and_then_the_modified_entry(services, tmp_path):
    add_events(services, 3)
    env = cli_env(services, tmp_path)
    r = CliRunner().invoke(main, ["audit", "verify"], env=env)
    assert r.exit_code == 0, r.output
    assert "Audit chain intact" in r.output and f"{len(entries(services))} entries checked" in r.output
    last = entries(services)[-1]["seq"]
    tamper(services, update(A).where(A.c.seq == last - 1).values(changes={"rows": "forged"}))
    r = CliRunner().invoke(main, ["audit", "verify"], env=env)
    assert r.exit_code == 1
    assert f"entry #{last - 1}: its details were modified" in r.output
    assert "The audit chain is broken" in r.output
    r = CliRunner().invoke(main, ["audit", "verify", "--json"], env=env)
    assert r.exit_code == 1
    assert '"ok": false' in r.output and f'"seq": {last - 1}' in r.output


def _age(services, seqs, days):
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)
    # the chain covers the time, so aged entries are rewritten as if written back then
    with write_transaction(services.engine) as conn:
        conn.execute(A.delete())
        conn.execute(audit_head.update().values(seq=0, hash="0" * 64, anchor_seq=0, anchor_hash="0" * 64))
        for i, age in enumerate(seqs):
            record_event(conn, category="export", action="export", changes={"i": i},
                         at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=age))
    flush_sealer(services.engine)  # a purge takes chained entries only
    return old


def test_purge_keeps_recent_entries_and_the_chain_verifiable(services):
    _age(services, [400, 300, 200, 10, 1], days=0)
    result = purge_before(services.engine, dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=180), actor_id=1)
    assert (result.deleted, result.anchor_seq) == (3, 3)
    rows = entries(services)
    assert [r["changes"].get("i") for r in rows] == [3, 4, None]
    assert (rows[-1]["category"], rows[-1]["action"], rows[-1]["changes"]["deleted"], rows[-1]["changes"]["anchor_seq"]) == ("audit", "purge", 3, 3)
    report = verify(services)
    assert report.ok, [str(p) for p in report.problems]
    assert (report.first_seq, report.checked) == (4, 3)
    # nothing more to purge: no deletion, no entry
    again = purge_before(services.engine, dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=180))
    assert again.deleted == 0 and len(entries(services)) == 3
    # moving the anchor by hand to hide deleted entries is detected
    tamper(services, A.delete().where(A.c.seq == 4))
    tamper(services, audit_head.update().values(anchor_seq=4, anchor_hash=rows[0]["hash"]))
    report = verify(services)
    assert any("anchor does not match" in p.message for p in report.problems)


def test_cli_purge_uses_the_retention_setting_and_refuses_short_periods(services, tmp_path):
    _age(services, [365, 200, 100], days=0)
    r = CliRunner().invoke(main, ["audit", "purge", "--days", "30"], env=cli_env(services, tmp_path))
    assert r.exit_code == 1 and "at least 180" in r.output
    assert len(entries(services)) == 3
    r = CliRunner().invoke(main, ["audit", "purge"], env=cli_env(services, tmp_path, CRMKIT_AUDIT_RETENTION_DAYS="300"))
    assert r.exit_code == 0, r.output
    assert "Purged 1 audit entries older than 300 days" in r.output
    r = CliRunner().invoke(main, ["audit", "purge", "--days", "150"], env=cli_env(services, tmp_path, CRMKIT_DEBUG="1"))
    assert r.exit_code == 0 and "Purged 1 audit entries older than 150 days" in r.output
    assert [r["changes"].get("i") for r in entries(services)] == [2, None, None]
    assert verify(services).ok


def test_retention_setting_defaults_to_180_days_and_refuses_less():
    assert Settings.from_env({}).audit_retention_days == 180
    assert Settings.from_env({"CRMKIT_AUDIT_RETENTION_DAYS": "365"}).audit_retention_days == 365
    with pytest.raises(ConfigError, match="at least 180"):
        Settings.from_env({"CRMKIT_AUDIT_RETENTION_DAYS": "30"})
    with pytest.raises(ConfigError, match="whole number"):
        Settings.from_env({"CRMKIT_AUDIT_RETENTION_DAYS": "half a year"})
    assert Settings.from_env({"CRMKIT_AUDIT_RETENTION_DAYS": "7", "CRMKIT_DEBUG": "1"}).audit_retention_days == 7


def test_migration_chains_entries_written_before_it(empty_database_url):
    engine = create_engine(empty_database_url)
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    with engine.begin() as conn:
        for i in range(3):
            conn.execute(text("INSERT INTO crmkit_audit (at, actor_id, entity, record_id, action, changes) VALUES (:at, 1, 'x.y', :r, 'create', :c)"),
                         {"at": dt.datetime(2025, 1, 1, 8, 0, i, 123456), "r": i + 1, "c": '{"name": [null, "n%d"]}' % i})
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with engine.connect() as conn:
        report = verify_chain(conn)
        assert report.ok, [str(p) for p in report.problems]
        assert report.checked == 3
        entry_id = record_event(conn, category="auth", action="login", subject="ada")
        seal_pending(conn)  # a plain connection has no after-commit seal (SQLite has sealed already: a no-op there)
        conn.commit()
        assert conn.execute(select(A.c.seq).where(A.c.id == entry_id)).scalar_one() == 4
        assert verify_chain(conn).ok
        assert conn.execute(select(func.count()).select_from(A).where(A.c.category == "record")).scalar_one() == 3
    engine.dispose()


@pytest.mark.postgres_only
def test_concurrent_writers_get_one_gap_free_chain(services, actor):
    errors = []

    def writer(n):
        try:
            for i in range(15):
                if i % 3 == 0:
                    services.records.create("membership.level", {"name": f"L{n}-{i}", "code": f"C{n}X{i}", "level_value": (n * 15 + i) % 100}, actor)
                else:
                    record_event_now(services.engine, category="export", action="export", actor_id=n, changes={"n": n, "i": i})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    before = len(entries(services))
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = entries(services)
    assert len(rows) == before + 8 * 15
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    report = verify(services)
    assert report.ok, [str(p) for p in report.problems]


@pytest.mark.postgres_only
def test_an_entry_committed_while_another_holds_the_chain_head_is_sealed_when_the_holder_commits(services):
    """The hand-off between sealers: a writer that finds the head locked leaves its entry to the holder, who looks again after its commit."""
    from crmkit.runtime.audit import record_events

    holder_ready, release = threading.Event(), threading.Event()

    def holder():
        with write_transaction(services.engine) as conn:
            record_events(conn, [{"category": "export", "action": "export", "changes": {"batch": i}} for i in range(3)])
            holder_ready.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert holder_ready.wait(10)
    entry_id = record_event_now(services.engine, category="auth", action="login", subject="ada")  # does not wait for the head
    with services.engine.connect() as conn:
        assert conn.execute(select(A.c.seq).where(A.c.id == entry_id)).scalar_one() is None  # pending behind the holder
    release.set()
    t.join()
    rows = entries(services)
    assert rows[-1]["id"] == entry_id and [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert verify(services).ok and verify(services).pending == 0
