"""Several web workers (gunicorn) on one database: a definition change saved by another process is
served by every worker on its very next request, with no restart (the metadata stamp).
"""
from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import time
import urllib.request
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import ADMIN_PASSWORD, ADMIN_USER, make_settings
from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.services import Services
from crmkit.runtime.storage import platform_tables as pt
from crmkit.runtime.storage.plan import Planner, apply_plan

WORKERS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gunicorn(databases, tmp_path):
    url = databases.fresh("membership")
    port, log = free_port(), tmp_path / "access.log"
    env = {**os.environ, "CRMKIT_DATABASE_URL": url, "CRMKIT_SECRET_KEY": "scale-out-test-secret-0123456789abcdef",
           "CRMKIT_VAR_DIR": str(tmp_path / "var"), "CRMKIT_SECURE_COOKIES": "0"}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("gunicorn")), "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}",
                             "--access-logfile", str(log), "--access-logformat", "%(p)s %(U)s", "--timeout", "60",
                             "crmkit.runtime.web:create_app()"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(base + "/login/", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("gunicorn did not start: " + proc.stderr.read().decode()[-2000:]) from None
            time.sleep(0.3)
    try:
        yield base, url, tmp_path, log
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def fetch_json(url: str, token: str | None = None, body: dict | None = None):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=20) as resp:  # a new connection each time: any worker may answer
        return json.loads(resp.read())


def add_member_field(url: str, tmp_path: Path) -> None:
    """What the builder's publish does: save the changed definition, then apply the schema plan."""
    services = Services.build(make_settings(url, tmp_path))
    with services.engine.connect() as conn:
        body = conn.execute(select(pt.document.c.body).where(pt.document.c.kind == "entity", pt.document.c.key == "membership.member")).scalar_one()
    body = copy.deepcopy(body)
    body["fields"].append({"id": "fld_mbr_wechat_id", "name": "wechat_id", "type": "text", "label": {"zh": "微信号", "en": "WeChat ID"}, "max_length": 64})
    services.store.save([RawDocument("entity", "membership", body, "test:member.json")])
    apply_plan(services.engine, Planner(services.engine, services.store.catalog()).plan(), confirm=False)
    services.engine.dispose()


def test_a_published_field_is_served_by_every_worker_at_once(gunicorn):
    base, url, tmp_path, log = gunicorn
    token = fetch_json(base + "/api/v1/security/login", body={"username": ADMIN_USER, "password": ADMIN_PASSWORD, "provider": "db"})["access_token"]
    schema = "/api/v1/openapi.json"
    for _ in range(WORKERS * 4):  # every worker has compiled the catalog before the change
        assert "wechat_id" not in json.dumps(fetch_json(base + schema, token))
    add_member_field(url, tmp_path)
    published = time.monotonic()
    created = fetch_json(base + "/api/v1/records/membership.member", token,
                         {"name": "林小雨", "mobile": "13900000001", "joined_on": "2025-03-01", "wechat_id": "lin_xy"})
    assert created["wechat_id"] == "lin_xy"
    answers = [fetch_json(base + schema, token) for _ in range(WORKERS * 8)]
    elapsed = time.monotonic() - published
    assert all("wechat_id" in a["components"]["schemas"]["membership_member"]["properties"] for a in answers)
    listed = fetch_json(base + "/api/v1/records/membership.member?limit=200", token)
    assert [m["wechat_id"] for m in listed["items"] if m["id"] == created["id"]] == ["lin_xy"]
    pids = {line.split()[0] for line in log.read_text().splitlines() if line.endswith(schema)}
    assert len(pids) >= 2, f"only {len(pids)} worker answered; the test must cross workers"
    print(f"visible in all {len(pids)} workers {elapsed:.2f}s after publishing (every request after it saw the field)")
