"""A job survives `kill -9` of its worker: the lease expires, the restarted worker runs it to the end, once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from crash_worker import KIND, register
from crmkit.runtime.storage import platform_tables as pt

HERE = Path(__file__).parent


def start_worker(services, log_path: Path) -> subprocess.Popen:
    s = services.settings
    env = {**os.environ, "CRMKIT_DATABASE_URL": s.database_url, "CRMKIT_VAR_DIR": str(s.var_dir), "CRMKIT_JOB_LEASE_SECONDS": "2",
           "CRMKIT_SECRET_KEY": "crash-test-secret-0123456789abcdef0123456789", "PYTHONPATH": str(HERE)}
    env.pop("CRMKIT_REDIS_URL", None)
    return subprocess.Popen([sys.executable, str(HERE / "crash_worker.py")], env=env, cwd=str(HERE),
                            stdout=log_path.open("ab"), stderr=subprocess.STDOUT)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def effect_rows(services, tag):
    with services.engine.connect() as conn:
        return conn.execute(select(pt.sequence.c.key, pt.sequence.c.value).where(pt.sequence.c.key.like(f"crash:{tag}:%"))).all()


def test_a_job_survives_kill_9_of_its_worker(base_services, tmp_path):
    services = base_services
    register(services.jobs.registry)
    log_path = tmp_path / "worker.log"
    n = 24
    job_id = services.jobs.submit(KIND, {"n": n, "tag": "t1", "sleep": 0.15}, actor=None)
    first = start_worker(services, log_path)
    try:
        wait_for(lambda: (services.jobs.get(job_id)["progress_done"] or 0) >= 6, 60, "the first worker to get going")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    row = services.jobs.get(job_id)
    written = len(effect_rows(services, "t1"))
    assert row["status"] == "running" and row["attempts"] == 1, row
    assert 6 <= written < n, written

    second = start_worker(services, log_path)
    try:
        row = wait_for(lambda: (r := services.jobs.get(job_id))["status"] in ("succeeded", "failed") and r, 90, "the job to finish")
    finally:
        second.send_signal(signal.SIGINT)
        try:
            second.wait(15)
        except subprocess.TimeoutExpired:
            second.kill()
    assert row["status"] == "succeeded", (row, log_path.read_text()[-3000:])
    assert row["attempts"] == 2 and row["result"] == {"rows": n} and row["progress_done"] == n
    rows = effect_rows(services, "t1")
    assert len(rows) == n  # every row once: nothing doubled, nothing missing
    firsts = sum(1 for _, v in rows if v == 1)
    assert firsts == written and all(v == 2 for _, v in rows if v != 1)  # the rerun only wrote what the first run had not


def test_a_worker_started_for_a_web_server_stops_when_that_server_is_gone(base_services, tmp_path):
    s = base_services.settings
    env = {**os.environ, "CRMKIT_DATABASE_URL": s.database_url, "CRMKIT_VAR_DIR": str(s.var_dir), "CRMKIT_JOB_LEASE_SECONDS": "2"}
    env.pop("CRMKIT_REDIS_URL", None)
    # --parent-pid names a process that is not this worker's parent: as if the server had died and the worker been re-parented
    proc = subprocess.Popen([sys.executable, "-m", "crmkit.runtime.cli", "worker", "--parent-pid", str(os.getpid() + 999999)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and b"crmkit worker:" in out
