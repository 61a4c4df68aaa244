"""Publishing a field on a big table: how long, which locks, and when other processes see it.

    python -m bench.publish [--size 1000000] [--database-url URL]

Seeds --size members (PostgreSQL by default: the database crmkit_bench_publish on the server in
CRMKIT_DATABASE_URL), then publishes a new nullable field through the builder (draft → plan → apply)
while a second process keeps querying the member list. Reports:

- the publish time, and the raw ``ALTER TABLE … ADD COLUMN`` on a copy-free baseline (a second column
  added by hand SQL) in the same run;
- the longest time the concurrent reader waited on one list query during the publish (the lock);
- the time until the other process's API answers with the new field (time-to-visible).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from crmkit.runtime.actor import Actor

from . import machine
from .__main__ import build_app, prepare_database
from .seed import seed_members

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ADMIN = Actor(id=1, username="bench", is_admin=True)


def reader(url: str, var: str, stop, waits, seen_at) -> None:
    """Another process: list members again and again; note the slowest query and when the new field appears."""
    from crmkit.runtime.config import Settings
    from crmkit.runtime.services import Services

    services = Services.build(Settings(database_url=url, secret_key="x" * 40, var_dir=Path(var)))
    worst = 0.0
    while not stop.is_set():
        t = time.perf_counter()
        page = services.queries.list("membership.member", ADMIN, limit=25, count="none", labels=False)
        worst = max(worst, time.perf_counter() - t)
        if seen_at.value == 0 and page.rows and "wechat_id" in page.rows[0]:
            seen_at.value = time.time()
        time.sleep(0.005)
    waits.value = worst
    services.engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.publish", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=int(os.environ.get("BENCH_SIZE", 1_000_000)))
    ap.add_argument("--database-url", default=os.environ.get("CRMKIT_DATABASE_URL") or DEFAULT_PG)
    args = ap.parse_args()
    var = Path(os.environ.get("CRMKIT_VAR_DIR", "var")) / "bench-publish"
    var.mkdir(parents=True, exist_ok=True)
    url = prepare_database(args.database_url, var, name="crmkit_bench_publish")
    app = build_app(url, var)
    services = app.extensions["crmkit"]
    t = time.perf_counter()
    seed_members(services, args.size)
    print(f"seeded {args.size} members in {time.perf_counter() - t:.1f}s")
    info = machine.describe(services.engine)

    from crmkit.builder import edits
    from crmkit.builder.service import BuilderService

    builder = BuilderService(services)
    draft = builder.open(ADMIN, "membership.member")
    draft = builder.edit(ADMIN, "membership.member", draft.revision, "add_field",
                         lambda docs: edits.add_field(docs, services.field_types, "text", "wechat_id",
                                                      {"label": {"zh": "微信号", "en": "WeChat ID"}, "max_length": 64}))
    spawn = mp.get_context("spawn")
    stop, waits, seen_at = spawn.Event(), spawn.Value("d", 0.0), spawn.Value("d", 0.0)
    proc = spawn.Process(target=reader, args=(url, str(var), stop, waits, seen_at))
    proc.start()
    time.sleep(3)  # the reader is warm and querying
    t0 = time.time()
    started = time.perf_counter()
    builder.publish(ADMIN, "membership.member", draft.revision)
    publish_s = time.perf_counter() - started
    deadline = time.time() + 30
    while seen_at.value == 0 and time.time() < deadline:
        time.sleep(0.01)
    visible_s = seen_at.value - t0 if seen_at.value else float("nan")
    stop.set()
    proc.join(timeout=30)

    started = time.perf_counter()
    with services.engine.begin() as conn:  # the baseline: the same column change by hand
        conn.execute(text("ALTER TABLE membership_member ADD COLUMN bench_hand_column varchar(64)"))
    hand_s = time.perf_counter() - started

    print()
    print(f"machine: {info['cores']} cores, {info['memory_gib']} GiB; {info['database']}; commit {info['commit']}")
    print(f"publish a nullable text field on {args.size:,} members (draft → validate → plan → apply): {publish_s * 1000:.0f} ms")
    print(f"  baseline: ALTER TABLE … ADD COLUMN by hand: {hand_s * 1000:.0f} ms (ratio {publish_s / hand_s:.1f}x)")
    print(f"slowest list query in another process during the publish (lock wait included): {waits.value * 1000:.0f} ms")
    print(f"time until the other process lists the new field: {visible_s:.2f} s")
    out = {"machine": info, "size": args.size, "publish_ms": publish_s * 1000, "hand_alter_ms": hand_s * 1000,
           "reader_worst_query_ms": waits.value * 1000, "time_to_visible_s": visible_s, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (var / "latest.json").write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {var / 'latest.json'}")
    services.engine.dispose()
    if make_url(url).get_backend_name() == "postgresql":
        print("(PostgreSQL adds a nullable column without rewriting the table; the plan also sets lock_timeout.)")


if __name__ == "__main__":
    main()
