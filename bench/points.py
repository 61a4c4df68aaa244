"""`python -m bench.points`: the points ledger under 16 concurrent workers, next to two plain-SQL baselines.

    python -m bench.points [--members 100000] [--workers 16] [--processes 4] [--seconds 10] [--database-url URL]

Scenarios: earn/redeem (half each) for a uniformly random member, and for one of 10 hot members. Variants:

- product: ``LedgerService.earn`` / ``redeem`` (idempotency key, row lock, lines, lots, audit chain, outbox);
- baseline ``SELECT … FOR UPDATE``: a hand-written ledger (balance row + posting row) with the same locking;
- the same baseline plus one hash-chained audit entry per posting (what the product also writes), to show that cost;
- naive read-then-write: reads the balance without a lock and writes ``balance = <read value> ± n`` — shown to
  lose points when workers collide (the invariant check at the end counts the damage).

The workers are spread over driver processes (a single Python process would cap the client at one core). Each
variant reports tx/s and p50/p95 latency; the product's ledger invariants are checked at the end. Results go
to var/bench/points.json. Run it on PostgreSQL (CRMKIT_DATABASE_URL): SQLite has one writer at a time.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import threading
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.db import make_engine, write_transaction

from . import machine
from .__main__ import build_app, prepare_database

SEED_POINTS = 10_000


def setup(url: str, var: Path, members: int):
    """The membership template installed as every bench installs it (``build_app``: user tables, roles), then the wallets."""
    from crmkit.apps.membership.ledger import tables as lt

    services = build_app(url, var).extensions["crmkit"]
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    import datetime as dt

    at = dt.datetime.fromisoformat(now)
    with write_transaction(services.engine) as c:  # every member starts with SEED_POINTS in one lot (executemany, not measured)
        liability = c.execute(lt.account.insert().values(kind="liability", member_id=0, currency="reward", balance=None, updated_at=at)).inserted_primary_key[0]
        c.execute(lt.account.insert(), [{"id": 1000 + m, "kind": "wallet", "member_id": m, "currency": "reward", "balance": SEED_POINTS, "updated_at": at}
                                        for m in range(1, members + 1)])
        c.execute(lt.entry.insert(), [{"id": m, "idempotency_key": f"seed:{m}", "kind": "earn", "currency": "reward", "member_id": m, "amount": SEED_POINTS,
                                       "source_type": "seed", "created_at": at} for m in range(1, members + 1)])
        c.execute(lt.line.insert(), [{"entry_id": m, "account_id": 1000 + m, "currency": "reward", "amount": SEED_POINTS} for m in range(1, members + 1)]
                  + [{"entry_id": m, "account_id": liability, "currency": "reward", "amount": -SEED_POINTS} for m in range(1, members + 1)])
        c.execute(lt.lot.insert(), [{"account_id": 1000 + m, "entry_id": m, "amount": SEED_POINTS, "remaining": SEED_POINTS, "created_at": at}
                                    for m in range(1, members + 1)])
        if c.dialect.name == "postgresql":
            for t in ("membership_pts_account", "membership_pts_entry"):
                c.execute(text(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT max(id) FROM {t}))"))
        c.execute(text("CREATE TABLE bench_balance (member_id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)"))
        c.execute(text("CREATE TABLE bench_posting (id BIGSERIAL PRIMARY KEY, member_id BIGINT NOT NULL, amount BIGINT NOT NULL, "
                       "idem_key VARCHAR(200) NOT NULL UNIQUE)" if c.dialect.name == "postgresql" else
                       "CREATE TABLE bench_posting (id INTEGER PRIMARY KEY, member_id BIGINT NOT NULL, amount BIGINT NOT NULL, idem_key VARCHAR(200) NOT NULL UNIQUE)"))
    return services


def reset_baseline(engine, members: int) -> None:
    with write_transaction(engine) as c:
        c.execute(text("DELETE FROM bench_posting"))
        c.execute(text("DELETE FROM bench_balance"))
        c.execute(text("INSERT INTO bench_balance (member_id, balance) VALUES (:m, :b)"), [{"m": m, "b": SEED_POINTS} for m in range(1, members + 1)])


def locked_op(engine, member: int, delta: int, key: str) -> bool:
    with write_transaction(engine) as c:
        bal = c.execute(text("SELECT balance FROM bench_balance WHERE member_id = :m FOR UPDATE" if c.dialect.name == "postgresql"
                             else "SELECT balance FROM bench_balance WHERE member_id = :m"), {"m": member}).scalar_one()
        if bal + delta < 0:
            return False
        c.execute(text("INSERT INTO bench_posting (member_id, amount, idem_key) VALUES (:m, :a, :k)"), {"m": member, "a": delta, "k": key})
        c.execute(text("UPDATE bench_balance SET balance = balance + :a WHERE member_id = :m"), {"m": member, "a": delta})
    return True


def locked_audited_op(engine, member: int, delta: int, key: str) -> bool:
    """The ``SELECT … FOR UPDATE`` baseline plus one entry in the hash-chained audit log, as every product posting writes."""
    from crmkit.runtime.audit import record_event

    with write_transaction(engine) as c:
        bal = c.execute(text("SELECT balance FROM bench_balance WHERE member_id = :m FOR UPDATE" if c.dialect.name == "postgresql"
                             else "SELECT balance FROM bench_balance WHERE member_id = :m"), {"m": member}).scalar_one()
        if bal + delta < 0:
            return False
        c.execute(text("INSERT INTO bench_posting (member_id, amount, idem_key) VALUES (:m, :a, :k)"), {"m": member, "a": delta, "k": key})
        c.execute(text("UPDATE bench_balance SET balance = balance + :a WHERE member_id = :m"), {"m": member, "a": delta})
        record_event(c, category="record", action="bench.post", entity="bench", record_id=member, changes={"amount": delta, "key": key})
    return True


def naive_op(engine, member: int, delta: int, key: str) -> bool:
    with engine.begin() as c:
        bal = c.execute(text("SELECT balance FROM bench_balance WHERE member_id = :m"), {"m": member}).scalar_one()
        if bal + delta < 0:
            return False
        c.execute(text("INSERT INTO bench_posting (member_id, amount, idem_key) VALUES (:m, :a, :k)"), {"m": member, "a": delta, "k": key})
        c.execute(text("UPDATE bench_balance SET balance = :b WHERE member_id = :m"), {"m": member, "b": bal + delta})
    return True


def product_op(engine):
    from crmkit.apps.membership.ledger import InsufficientPoints, LedgerService

    ledger = LedgerService(engine)

    def op(engine, member: int, delta: int, key: str) -> bool:
        try:
            if delta > 0:
                ledger.earn(member, delta, key=key, actor=SYSTEM, source_type="bench")
            else:
                ledger.redeem(member, -delta, key=key, actor=SYSTEM, source_type="bench")
        except InsufficientPoints:
            return False
        return True

    return op


# Each variant is built inside each driver process, on that process's own engine.
VARIANTS = {"product": product_op, "for_update": lambda engine: locked_op, "for_update_audited": lambda engine: locked_audited_op,
            "naive": lambda engine: naive_op}


def _drive(url: str, variant: str, threads: int, seconds: float, pick, tag: str, barrier, results) -> None:
    """One driver process: ``threads`` workers posting through ``variant`` on an engine of its own; reports latencies and errors."""
    engine = make_engine(url, pool_size=threads + 2, max_overflow=0)
    op = VARIANTS[variant](engine)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    ready = threading.Barrier(threads + 1)
    stop = [0.0]

    def work(w: int):
        rnd = random.Random(f"{tag}:{w}")
        ready.wait()
        n = 0
        while time.perf_counter() < stop[0]:
            member = pick(rnd)
            delta = rnd.randint(1, 50) * (1 if rnd.random() < 0.5 else -1)
            t = time.perf_counter()
            try:
                op(engine, member, delta, f"{tag}:{w}:{n}")
            except Exception:  # noqa: BLE001 - counted; a serialisation failure is a result here
                errors[w] += 1
            latencies[w].append((time.perf_counter() - t) * 1000)
            n += 1

    workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for t in workers:
        t.start()
    barrier.wait()  # every process starts together
    t0 = time.perf_counter()
    stop[0] = t0 + seconds
    ready.wait()
    for t in workers:
        t.join()
    results.put(([x for ws in latencies for x in ws], sum(errors), time.perf_counter() - t0))
    results.close()
    results.join_thread()
    engine.dispose()


def run(url: str, variant: str, *, workers: int, processes: int, seconds: float, pick, tag: str) -> dict:
    """``workers`` concurrent workers spread over ``processes`` driver processes (one Python process's GIL would cap the
    client at one core, which is not how the product runs: gunicorn workers are processes)."""
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    per = [workers // processes + (1 if i < workers % processes else 0) for i in range(processes)]
    procs = [ctx.Process(target=_drive, args=(url, variant, n, seconds, pick, f"{tag}:{i}", barrier, results)) for i, n in enumerate(per)]
    for p in procs:
        p.start()
    got = [results.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a {variant} driver process failed (exit code {p.exitcode})")
    lat = sorted(x for ls, _, _ in got for x in ls)
    wall = max(w for _, _, w in got)
    return {"tx": len(lat), "tx_per_s": round(len(lat) / wall, 1), "p50_ms": round(statistics.median(lat), 2),
            "p95_ms": round(lat[max(0, int(len(lat) * 0.95) - 1)], 2), "errors": sum(e for _, e, _ in got)}


def baseline_damage(engine) -> dict:
    """Points lost by the baseline: Σ(balance) against seed + Σ(postings)."""
    with engine.connect() as c:
        drift = c.execute(text("SELECT count(*), coalesce(sum(abs(b.balance - :seed - coalesce(p.s, 0))), 0) FROM bench_balance b "
                               "LEFT JOIN (SELECT member_id, sum(amount) AS s FROM bench_posting GROUP BY member_id) p ON p.member_id = b.member_id "
                               "WHERE b.balance <> :seed + coalesce(p.s, 0)"), {"seed": SEED_POINTS}).one()
    return {"accounts_wrong": int(drift[0]), "points_lost_or_invented": int(drift[1])}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.points", description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--processes", type=int, default=4, help="driver processes the workers are spread over (default 4)")
    ap.add_argument("--database-url", default=os.environ.get("CRMKIT_DATABASE_URL"))
    args = ap.parse_args()
    var = Path(os.environ.get("CRMKIT_VAR_DIR", "var")) / "bench"
    url = prepare_database(args.database_url, var, name="crmkit_bench_points")
    print(f"bench.points: database {make_url(url).render_as_string(hide_password=True)}, {args.members} members, "
          f"{args.workers} workers in {args.processes} processes")
    t = time.perf_counter()
    services = setup(url, var, args.members)
    print(f"seeded {args.members} wallets in {time.perf_counter() - t:.1f}s")
    services.engine.dispose()  # the driver processes fork from here: they must not share its connections
    engine = make_engine(url, pool_size=2, max_overflow=0)
    from crmkit.apps.membership.ledger import check_invariants

    scenarios = {"uniform": lambda rnd: rnd.randint(1, args.members), "10 hot members": lambda rnd: rnd.randint(1, 10)}
    results = []
    for name, pick in scenarios.items():
        row: dict = {"scenario": name}
        for variant in VARIANTS:
            if variant != "product":
                reset_baseline(engine, args.members)
            engine.dispose()
            row[variant] = run(url, variant, workers=args.workers, processes=args.processes, seconds=args.seconds, pick=pick, tag=f"{variant}-{name}")
            if variant != "product":
                row[variant].update(baseline_damage(engine))
        results.append(row)
    with engine.connect() as c:
        problems = check_invariants(c)
    info = machine.describe(engine)
    print()
    print(f"machine: {info['cores']} cores, {info['memory_gib']} GiB, {info['cpu']}; {info['database']}; commit {info['commit']}")
    for r in results:
        for variant in ("product", "for_update", "for_update_audited", "naive"):
            v = r[variant]
            extra = f" | wrong accounts {v['accounts_wrong']}, points lost/invented {v['points_lost_or_invented']}" if "accounts_wrong" in v else ""
            print(f"{r['scenario']:<16} {variant:<18} {v['tx_per_s']:>8.1f} tx/s  p50 {v['p50_ms']:>7.2f} ms  p95 {v['p95_ms']:>7.2f} ms  "
                  f"errors {v['errors']}{extra}")
    print(f"ledger invariants after the run: {'OK' if not problems else problems[:5]}")
    var.mkdir(parents=True, exist_ok=True)
    out = {"machine": info, "members": args.members, "workers": args.workers, "processes": args.processes, "seconds": args.seconds, "results": results,
           "invariant_problems": problems, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (var / "points.json").write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {var / 'points.json'}")
    engine.dispose()
    services.engine.dispose()


if __name__ == "__main__":
    main()
