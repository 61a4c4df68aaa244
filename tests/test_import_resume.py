"""Crash safety: `crmkit import` killed with SIGKILL mid-run, resumed with --resume, ends with exactly the file's rows."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from click.testing import CliRunner
from sqlalchemy import func, select

from crmkit.runtime.audit.verify import verify_chain
from crmkit.runtime.cli import main
from crmkit.runtime.imports.tables import import_run
from crmkit.runtime.storage import platform_tables as pt

from import_support import member_rows, members, write_csv

CLI = [sys.executable, "-c", "from crmkit.runtime.cli import main; main()"]


def env_for(services, tmp_path):
    return {**os.environ, "CRMKIT_DATABASE_URL": services.settings.database_url, "CRMKIT_VAR_DIR": str(tmp_path / "var")}


def run_state(services):
    with services.engine.connect() as conn:
        return conn.execute(select(import_run.c.id, import_run.c.checkpoint, import_run.c.status, import_run.c.created_count)).first()


def test_kill_9_mid_import_then_resume_gives_exactly_the_file(services, tmp_path):
    n = 12_000
    rows = member_rows(n)
    path = write_csv(tmp_path / "big.csv", rows)
    env = env_for(services, tmp_path)
    proc = subprocess.Popen(CLI + ["import", str(path), "--entity", "membership.member", "--key", "mobile", "--batch-size", "250"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    state = None
    while time.monotonic() < deadline:
        state = run_state(services)
        if state is not None and state.checkpoint >= 1000:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = run_state(services)
    assert state.status == "running" and 1000 <= state.checkpoint < n + 1, state
    # The checkpoint and the committed rows agree: no half batch survives the kill.
    assert len(members(services)) == state.checkpoint - 1 == state.created_count

    out = subprocess.run(CLI + ["import", "--resume", str(state.id)], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"Resuming import #{state.id} after row {state.checkpoint}" in out.stdout
    final = run_state(services)
    assert final.status == "succeeded" and final.checkpoint == n + 1 and final.created_count == n
    got = members(services)
    assert sorted(got) == sorted(r[1] for r in rows)
    assert all(got[r[1]]["name"] == r[0] and got[r[1]]["notes"] == r[6] for r in rows)
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(pt.outbox)).scalar() == n
        assert conn.execute(select(func.count()).select_from(pt.audit).where(pt.audit.c.category == "record")).scalar() == n
        assert verify_chain(conn).ok


def test_cli_dry_run_and_errors(services, tmp_path):
    rows = member_rows(5)
    rows[2][1] = "not-a-phone"
    path = write_csv(tmp_path / "m.csv", rows)
    env = {"CRMKIT_DATABASE_URL": services.settings.database_url, "CRMKIT_VAR_DIR": str(tmp_path / "var")}
    r = CliRunner().invoke(main, ["import", str(path), "--entity", "membership.member", "--dry-run"], env=env)
    assert r.exit_code == 0, r.output
    assert '"created": 4' in r.output and '"errors": 1' in r.output and "row 4 [error]: 手机号" in r.output
    assert members(services) == {}
    r = CliRunner().invoke(main, ["import", str(path), "--entity", "membership.member", "--mode", "update"], env=env)
    assert r.exit_code == 1 and "key" in r.output
    r = CliRunner().invoke(main, ["import", str(path), "--entity", "membership.member"], env=env)
    assert r.exit_code == 0 and '"created": 4' in r.output and len(members(services)) == 4
