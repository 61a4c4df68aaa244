"""`crmkit backup` / `crmkit restore`: a restore drill on SQLite and PostgreSQL.

Back up a database with records and an audit chain, change it (more records, a deletion, a new
table), restore, and find exactly the backed-up row counts with a verifying audit chain.
"""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from crmkit.runtime.cli import main


@pytest.fixture
def cli_env(empty_database_url, tmp_path):
    return {"CRMKIT_DATABASE_URL": empty_database_url, "CRMKIT_VAR_DIR": str(tmp_path / "var"), "CRMKIT_SECRET_KEY": "cli-test-secret"}


def invoke(args, env):
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def count(engine, table):
    with engine.connect() as c:
        return c.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_restore_drill_brings_back_exactly_the_backed_up_rows(cli_env, tmp_path):
    assert invoke(["init"], cli_env).exit_code == 0
    assert invoke(["apps", "install", "membership", "--demo", "--demo-size", "12"], cli_env).exit_code == 0
    engine = create_engine(cli_env["CRMKIT_DATABASE_URL"])
    members, audit = count(engine, "membership_member"), count(engine, "crmkit_audit")
    assert members >= 12 and audit >= members  # 12 demo members plus the approved demo join applications

    target = tmp_path / "backups" / "crmkit.backup"
    r = invoke(["backup", str(target)], cli_env)
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "backups" / "crmkit.backup.manifest.json").read_text())
    assert manifest["tables"]["membership_member"] == members and manifest["tables"]["crmkit_audit"] == audit
    assert manifest["meta_stamp"] and manifest["alembic_revision"]

    # Life goes on after the backup: rows added and removed, a table created.
    with engine.begin() as c:
        c.execute(text("DELETE FROM membership_member WHERE id IN (SELECT id FROM membership_member ORDER BY id LIMIT 3)"))
        c.execute(text("CREATE TABLE scratch_after_backup (id integer)"))
    assert invoke(["apps", "install", "membership", "--demo", "--demo-size", "5"], cli_env).exit_code in (0, 1)
    engine.dispose()

    refused = CliRunner().invoke(main, ["restore", str(target)], env=cli_env)
    assert refused.exit_code == 2 and "--yes" in refused.output

    r = invoke(["restore", str(target), "--yes"], cli_env)
    assert r.exit_code == 0, r.output
    assert "every count matches" in r.output
    engine = create_engine(cli_env["CRMKIT_DATABASE_URL"])
    assert count(engine, "membership_member") == members and count(engine, "crmkit_audit") == audit
    with engine.connect() as c:
        tables = set(c.dialect.get_table_names(c))
    assert "scratch_after_backup" not in tables
    engine.dispose()
    assert "Audit chain intact" in invoke(["audit", "verify"], cli_env).output


def test_a_damaged_or_foreign_backup_is_refused_and_nothing_changes(cli_env, tmp_path):
    assert invoke(["init"], cli_env).exit_code == 0
    target = tmp_path / "b.backup"
    assert invoke(["backup", str(target)], cli_env).exit_code == 0
    again = CliRunner().invoke(main, ["backup", str(target)], env=cli_env)
    assert again.exit_code == 1 and "already exists" in again.output

    with target.open("r+b") as f:  # one flipped byte
        f.seek(200)
        b = f.read(1)
        f.seek(200)
        f.write(bytes([b[0] ^ 0xFF]))
    r = CliRunner().invoke(main, ["restore", str(target), "--yes"], env=cli_env)
    assert r.exit_code == 2 and "checksum" in r.output

    missing = CliRunner().invoke(main, ["restore", str(tmp_path / "nope.backup"), "--yes"], env=cli_env)
    assert missing.exit_code == 2 and "no backup file" in missing.output

    other = tmp_path / "other.backup"
    other.write_bytes(b"x")
    manifest = json.loads((tmp_path / "b.backup.manifest.json").read_text())
    import hashlib
    foreign = {**manifest, "database": "postgresql" if manifest["database"] == "sqlite" else "sqlite", "sha256": hashlib.sha256(b"x").hexdigest()}
    (tmp_path / "other.backup.manifest.json").write_text(json.dumps(foreign))
    r = CliRunner().invoke(main, ["restore", str(other), "--yes"], env=cli_env)
    assert r.exit_code == 2 and "Restore it into a database of the same kind" in r.output
    engine = create_engine(cli_env["CRMKIT_DATABASE_URL"])
    assert count(engine, "crmkit_meta_stamp") == 1  # still the initialised database
    engine.dispose()
