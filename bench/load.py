"""`make load`: gunicorn (4 workers) on PostgreSQL and Redis under mixed traffic from locust.

    python -m bench.load [--users 50] [--duration 2m] [--size 100000] [--workers 4]

Prepares its own database `crmkit_load` on the PostgreSQL server in CRMKIT_DATABASE_URL (default: the
local test server), seeds the membership template with --size members, starts gunicorn with Redis
(CRMKIT_REDIS_URL, default redis://127.0.0.1:6379/14) and runs locust headless against it. Prints the
request count, error rate, p50 and p95 per request type, and writes var/load/latest.json.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sqlalchemy.engine import make_url

from . import machine
from .__main__ import build_app, prepare_database
from .seed import seed_members

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SECRET = "load-test-secret-key-0123456789abcdef0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(url: str, redis_url: str, workers: int, port: int, var: Path) -> subprocess.Popen:
    env = {**os.environ, "CRMKIT_DATABASE_URL": url, "CRMKIT_REDIS_URL": redis_url, "CRMKIT_SECRET_KEY": SECRET,
           "CRMKIT_VAR_DIR": str(var), "CRMKIT_SECURE_COOKIES": "0", "CRMKIT_LOGIN_RATE_LIMIT": "1000 per minute"}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("gunicorn")), "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
                             "--timeout", "120", "--log-level", "warning", "crmkit.runtime.web:create_app()"], env=env)
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2).read()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("gunicorn did not start; see its output above.") from None
            time.sleep(0.5)


def read_stats(prefix: Path) -> list[dict]:
    out = []
    with open(f"{prefix}_stats.csv", newline="") as f:
        for row in csv.DictReader(f):
            n, failures = int(row["Request Count"]), int(row["Failure Count"])
            out.append({"name": row["Name"], "method": row["Type"], "requests": n, "failures": failures,
                        "error_rate": failures / n if n else 0.0, "p50_ms": float(row["50%"] or 0), "p95_ms": float(row["95%"] or 0),
                        "rps": float(row["Requests/s"] or 0)})
    return out


def add_points_plan(services) -> int:
    """A plan covering last year to next year with one consumption item (1 point per yuan), so paid orders earn points."""
    from crmkit.runtime.actor import SYSTEM

    year = dt.date.today().year
    plan = services.records.create("membership.points_plan", {"name": "压测积分计划", "code": "LOAD", "starts_on": f"{year - 1}-01-01",
                                                              "ends_on": f"{year + 1}-12-31", "expiry_rule": "never"}, SYSTEM)
    services.records.create("membership.point_item", {"plan": plan, "name": "消费积分", "kind": "consumption", "per_yuan": "1"}, SYSTEM)
    return plan


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--spawn-rate", type=float, default=10)
    ap.add_argument("--duration", default="2m")
    ap.add_argument("--size", type=int, default=int(os.environ.get("BENCH_SIZE", 100_000)))
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--database-url", default=os.environ.get("CRMKIT_DATABASE_URL") or DEFAULT_PG)
    ap.add_argument("--redis-url", default=os.environ.get("CRMKIT_REDIS_URL") or "redis://127.0.0.1:6379/14")
    args = ap.parse_args()
    if make_url(args.database_url).get_backend_name() != "postgresql":
        raise SystemExit("make load runs on PostgreSQL: set CRMKIT_DATABASE_URL to a PostgreSQL server (the database crmkit_load is created on it).")
    var = Path(os.environ.get("CRMKIT_VAR_DIR", "var")) / "load"
    var.mkdir(parents=True, exist_ok=True)
    url = prepare_database(args.database_url, var, name="crmkit_load")
    app = build_app(url, var)
    services = app.extensions["crmkit"]
    t = time.perf_counter()
    seed_members(services, args.size)
    add_points_plan(services)
    print(f"seeded {args.size} members and a points plan in {time.perf_counter() - t:.1f}s")
    info = machine.describe(services.engine)
    services.engine.dispose()

    port = free_port()
    server = start_gunicorn(url, args.redis_url, args.workers, port, var)
    prefix = var / "locust"
    try:
        env = {**os.environ, "LOAD_SIZE": str(args.size), "LOAD_MOBILE_START": str(int(time.time()) % 1_000_000)}
        subprocess.run([str(Path(sys.executable).with_name("locust")), "-f", str(Path(__file__).with_name("locustfile.py")), "--headless",
                        "-u", str(args.users), "-r", str(args.spawn_rate), "-t", args.duration, "--host", f"http://127.0.0.1:{port}",
                        "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING"], env=env, check=False)
    finally:
        server.terminate()
        server.wait(timeout=30)
    stats = read_stats(prefix)
    print()
    print(f"machine: {info['cores']} cores, {info['memory_gib']} GiB; {info['database']}; commit {info['commit']}")
    print(f"{args.users} users for {args.duration}, gunicorn {args.workers} workers, Redis {args.redis_url}, {args.size} members")
    print(f"{'request':40} {'count':>7} {'errors':>7} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>7}")
    for s in stats:
        print(f"{s['name'][:40]:40} {s['requests']:7d} {s['error_rate']:7.2%} {s['p50_ms']:8.0f} {s['p95_ms']:8.0f} {s['rps']:7.1f}")
    out = {"machine": info, "users": args.users, "duration": args.duration, "workers": args.workers, "size": args.size,
           "stats": stats, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (var / "latest.json").write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {var / 'latest.json'}")
    total = next((s for s in stats if s["name"] == "Aggregated"), None)
    if total and total["error_rate"] > 0.01:
        raise SystemExit(f"error rate {total['error_rate']:.2%} is above 1%")


if __name__ == "__main__":
    main()
