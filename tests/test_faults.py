"""Faults: the database going away under the app, file storage that cannot be written, and the web
server killed in the middle of a write. Each ends with a clear error and nothing half-written."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from conftest import ADMIN_PASSWORD, ADMIN_USER, login, make_settings
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import StorageUnavailable
from crmkit.runtime.storage import platform_tables as pt
from fault_support import CuttableProxy

MEMBERS = "/api/v1/records/membership.member"


def jwt(client) -> dict:
    token = client.post("/api/v1/security/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD, "provider": "db"}).get_json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


# --- the database restarts under the app --------------------------------------------------------------------------
@pytest.mark.postgres_only
def test_database_outage_gives_clear_503s_and_the_app_recovers_without_restart(databases, tmp_path):
    from crmkit.runtime.web.app import create_app

    url = make_url(databases.fresh("membership"))
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.start()
    app = create_app(make_settings(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), tmp_path), testing=True)
    api = app.test_client()
    auth = jwt(api)
    web = app.test_client()
    login(web)
    assert api.get(MEMBERS, headers=auth).status_code == 200
    assert web.get("/e/membership.member/").status_code == 200

    proxy.cut()  # the server goes down: open connections die, new ones are refused
    down = api.get(MEMBERS, headers=auth)
    assert down.status_code == 503 and down.get_json()["code"] == "service_unavailable"
    assert "Try again" in down.get_json()["message"] and down.headers["Retry-After"]
    created = api.post(MEMBERS, headers=auth, json={"name": "停机测试", "mobile": "13900009999", "joined_on": "2025-01-02"})
    assert created.status_code == 503
    page = web.get("/e/membership.member/")
    assert page.status_code == 503 and "服务暂时不可用" in page.get_data(as_text=True)

    proxy.start()  # back on the same port: no restart of the app, the pool replaces dead connections
    deadline = time.monotonic() + 10
    while (resp := api.get(MEMBERS, headers=auth)).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert resp.status_code == 200
    assert web.get("/e/membership.member/").status_code == 200
    ok = api.post(MEMBERS, headers=auth, json={"name": "恢复测试", "mobile": "13900009998", "joined_on": "2025-01-02"})
    assert ok.status_code == 201
    names = {m["name"] for m in api.get(MEMBERS + "?limit=200", headers=auth).get_json()["items"]}
    assert "恢复测试" in names and "停机测试" not in names
    proxy.cut()


# --- attachments cannot be written --------------------------------------------------------------------------------
def test_unwritable_file_storage_is_a_clear_error_and_stores_nothing(databases, tmp_path):
    from crmkit.runtime.web.app import create_app

    settings = make_settings(databases.fresh("membership"), tmp_path)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    settings.upload_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.upload_dir.write_text("a file where the storage directory should be")  # mkdir and writes fail
    app = create_app(settings, testing=True)
    services = app.extensions["crmkit"]
    with pytest.raises(StorageUnavailable):
        services.records.store_file(settings.upload_dir, "scan.pdf", "application/pdf", b"%PDF-1.4", SYSTEM)
    client = app.test_client()
    resp = client.post("/api/v1/files", headers=jwt(client), data={"file": (__import__("io").BytesIO(b"hello"), "notes.txt")},
                       content_type="multipart/form-data")
    assert resp.status_code == 503 and resp.get_json()["code"] == "storage_unavailable"
    assert "Nothing was saved" in resp.get_json()["message"]
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(pt.stored_file)).scalar_one() == 0


def test_a_failed_write_leaves_no_partial_file(databases, tmp_path):
    from crmkit.runtime.services import Services

    settings = make_settings(databases.fresh("membership"), tmp_path)
    services = Services.build(settings)
    stored = services.records.store_file(settings.upload_dir, "a.txt", "text/plain", b"first", SYSTEM)
    folder = settings.upload_dir / stored["id"][:2]
    assert (folder / stored["id"]).read_bytes() == b"first" and not list(folder.glob("*.part"))
    # a file whose write fails half-way (the process may not grow files beyond 4 KiB): nothing is left behind
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "from crmkit.runtime.records.service import RecordService\n"
        "from crmkit.runtime.errors import StorageUnavailable\n"
        "svc = RecordService.__new__(RecordService); svc.max_upload_bytes = 10**7\n"
        "try:\n"
        f"    svc.store_file({str(settings.upload_dir)!r}, 'big.bin', 'application/octet-stream', b'x' * 100000, None)\n"
        "except StorageUnavailable as e:\n"
        "    print('refused:', e.code)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "refused: storage_unavailable" in out.stdout, out.stderr[-2000:]
    files = [p for p in settings.upload_dir.rglob("*") if p.is_file()]
    assert files == [folder / stored["id"]], files
    services.engine.dispose()


# --- the web server killed in the middle of a write -----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_killed_mid_bulk_update_leaves_all_or_nothing(databases, tmp_path):
    from crmkit.runtime.services import Services

    url = databases.fresh("membership")
    services = Services.build(make_settings(url, tmp_path))
    ids = [services.records.create("membership.member", {"name": f"会员{i}", "mobile": f"137{i:08d}", "joined_on": "2025-01-01"}, SYSTEM)
           for i in range(400)]
    services.engine.dispose()
    port = free_port()
    env = {**os.environ, "CRMKIT_DATABASE_URL": url, "CRMKIT_SECRET_KEY": "fault-test-secret-0123456789abcdef0123456789",
           "CRMKIT_VAR_DIR": str(tmp_path / "var"), "CRMKIT_SECURE_COOKIES": "0"}
    server = subprocess.Popen([str(Path(sys.executable).with_name("crmkit")), "run", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/login/", timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "server did not start"
                time.sleep(0.3)
        req = urllib.request.Request(base + "/api/v1/security/login", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"username": ADMIN_USER, "password": ADMIN_PASSWORD, "provider": "db"}).encode())
        token = json.loads(urllib.request.urlopen(req, timeout=30).read())["access_token"]
        outcome = {}

        def bulk():
            body = json.dumps({"ids": ids, "values": {"status": "lost"}}).encode()
            r = urllib.request.Request(base + MEMBERS + "/bulk-update", data=body, method="POST",
                                       headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            try:
                outcome["status"] = urllib.request.urlopen(r, timeout=60).status
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                outcome["error"] = exc

        engine = create_engine(url)
        before = _audit_count(engine)
        thread = threading.Thread(target=bulk)
        thread.start()
        # kill -9 once the server is inside the write: its transaction holds new audit rows not yet committed
        time.sleep(0.25)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        thread.join(timeout=60)
        assert "error" in outcome, f"the bulk update finished ({outcome}) before the kill; the test must kill mid-request"
        with engine.connect() as conn:
            lost = conn.execute(text("SELECT count(*) FROM membership_member WHERE status = 'lost'")).scalar_one()
            bumped = conn.execute(text("SELECT count(*) FROM membership_member WHERE row_version > 1")).scalar_one()
            events = conn.execute(select(func.count()).select_from(pt.outbox).where(pt.outbox.c.topic == "record.updated")).scalar_one()
        assert lost == bumped == 0, (lost, bumped)  # rolled back: no member changed, none half-changed
        assert _audit_count(engine) == before and events == 0  # no audit entry or event for a change that did not happen
        engine.dispose()
    finally:
        if server.poll() is None:
            server.kill()


def _audit_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(pt.audit)).scalar_one()
