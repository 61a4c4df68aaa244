"""Import benchmark: N member rows (12 columns, two unique keys) through the import engine vs a raw load.

    python -m bench imports [--size 100000] [--batch-size 1000] [--database-url URL] [--profile]

Product: ``crmkit.runtime.imports`` reads the CSV as a stream, maps the columns, parses every cell through the
field types, checks duplicates in the file and the database, and writes batches through
``RecordService.write_many`` (validation, policy, sequence numbers, audit chain, outbox, checkpoint).
``--profile`` adds a cProfile of the engine run and the SQL statements per batch (the figures are then slower).
Baseline: the same file loaded raw in one transaction: psycopg ``COPY`` on PostgreSQL, ``executemany`` on SQLite.
Reports rows/s of both, the ratio, and the process's peak RSS after each phase.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import resource
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from . import machine
from .timing import compare_rate

HEADERS = ["姓名", "手机号", "身份证号", "邮箱", "性别", "生日", "入会日期", "卡状态", "入会渠道", "累计消费", "联系地址", "备注"]
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_number(i: int) -> tuple[str, dt.date]:
    born = dt.date(1960, 1, 1) + dt.timedelta(days=i // 1000)
    body = f"110101{born:%Y%m%d}{i % 1000:03d}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, WEIGHTS)) % 11], born


def write_file(path: Path, n: int) -> None:
    channels, statuses = ["门店现场", "线上入会", "购买入会", "会员推荐"], ["正常", "正常", "正常", "挂失"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADERS)
        for i in range(n):
            idn, born = id_number(i)
            gender = "男" if int(idn[16]) % 2 else "女"
            joined = dt.date(2020, 1, 1) + dt.timedelta(days=i % 1500)
            w.writerow([f"会员{i:07d}", f"13{i % 10}{i:08d}", idn, f"m{i}@example.com", gender,
                        born.strftime("%Y/%m/%d") if i % 2 else born.isoformat(), f"{joined:%Y年%m月%d日}" if i % 3 == 0 else joined.isoformat(),
                        statuses[i % 4], channels[i % 4], f"{(i % 5000) + 0.5:.2f}", f"上海市浦东新区{i % 900}号", f"备注 {i}"])


def prepare_database(url: str | None, var: Path) -> str:
    """Like the main bench's, but its own database (crmkit_bench_imports / imports.db), so both can run at once."""
    from sqlalchemy import create_engine

    if url and make_url(url).get_backend_name() == "postgresql":
        admin = create_engine(make_url(url).render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'crmkit_bench_imports' AND pid <> pg_backend_pid()"))
            c.execute(text('DROP DATABASE IF EXISTS "crmkit_bench_imports"'))
            c.execute(text('CREATE DATABASE "crmkit_bench_imports"'))
        admin.dispose()
        return make_url(url).set(database="crmkit_bench_imports").render_as_string(hide_password=False)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{var / 'imports.db'}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{(var / 'imports.db').resolve()}"


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def baseline_load(engine, path: Path) -> int:
    """The file's rows straight into the table in one transaction, values as the file has them (dates made ISO)."""
    cols = ["name", "mobile", "id_number", "email", "gender", "birthday", "joined_on", "status", "join_channel", "total_spent", "address", "notes",
            "created_at", "updated_at", "row_version"]
    gender = {"男": "male", "女": "female"}
    status = {"正常": "active", "挂失": "lost"}
    channel = {"门店现场": "store", "线上入会": "online", "购买入会": "purchase", "会员推荐": "referral"}
    now = dt.datetime.now(dt.timezone.utc)

    def rows():
        with open(path, newline="", encoding="utf-8") as fh:
            r = csv.reader(fh)
            next(r)
            for c in r:
                yield [c[0], c[1], c[2], c[3], gender[c[4]], c[5].replace("/", "-"),
                       c[6].replace("年", "-").replace("月", "-").replace("日", ""), status[c[7]], channel[c[8]], c[9], c[10], c[11], now, now, 1]

    n = 0
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            with raw.cursor() as cur:
                with cur.copy(f"COPY membership_member ({', '.join(cols)}) FROM STDIN") as copy:
                    for row in rows():
                        copy.write_row(row)
                        n += 1
            raw.commit()
        return n
    sql = f"INSERT INTO membership_member ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        cur = raw.cursor()
        cur.execute("BEGIN IMMEDIATE")
        batch = []
        for row in rows():
            row[-3] = row[-2] = now.replace(tzinfo=None).isoformat(sep=" ")
            batch.append(row)
            if len(batch) == 5000:
                cur.executemany(sql, batch)
                n += len(batch)
                batch = []
        cur.executemany(sql, batch)
        n += len(batch)
        cur.execute("COMMIT")
    return n


def main(argv: list[str] | None = None) -> None:
    from . import __main__ as bench_main

    ap = argparse.ArgumentParser(prog="python -m bench imports", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=int(os.environ.get("BENCH_SIZE", 100_000)))
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--database-url", default=os.environ.get("CRMKIT_DATABASE_URL"))
    ap.add_argument("--profile", action="store_true", help="cProfile the engine run (top 25 by cumulative time) and count its SQL "
                    "statements per batch (COPY is not counted: it bypasses SQLAlchemy's cursor events)")
    args = ap.parse_args(argv)
    var = Path(os.environ.get("CRMKIT_VAR_DIR", "var")) / "bench"
    var.mkdir(parents=True, exist_ok=True)
    url = prepare_database(args.database_url, var)
    print(f"bench imports: database {make_url(url).render_as_string(hide_password=True)}, {args.size} rows")
    app = bench_main.build_app(url, var)
    services = app.extensions["crmkit"]
    engine = services.engine
    path = var / f"import-{args.size}.csv"
    write_file(path, args.size)
    print(f"file: {path} ({path.stat().st_size / 2**20:.1f} MiB); peak RSS before import {peak_rss_mib()} MiB")

    from crmkit.runtime.imports import ImportEngine
    from crmkit.runtime.imports.actor import actor_by_username

    actor = actor_by_username(engine, "bench")
    imports = ImportEngine(services)
    run_id = imports.create_run(path, "membership.member", actor, mode="insert", key="mobile", batch_size=args.batch_size)
    profiler = counter = None
    if args.profile:
        import cProfile

        profiler, counter = cProfile.Profile(), bench_main.StatementCounter(engine).__enter__()
        profiler.enable()
    t, cpu = time.perf_counter(), time.process_time()
    summary = imports.run(run_id, actor)
    product_s, product_cpu = time.perf_counter() - t, time.process_time() - cpu
    if profiler is not None:
        import pstats

        profiler.disable()
        counter.__exit__(None, None, None)
        print(f"SQL statements: {len(counter.statements)} ({len(counter.statements) / max(1, -(-args.size // args.batch_size)):.1f} per batch)")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    rss_product = peak_rss_mib()
    assert summary.created == args.size and summary.errors == 0, summary.to_json()
    with engine.begin() as c:
        assert c.execute(text("SELECT count(*) FROM membership_member")).scalar_one() == args.size
        c.execute(text("DELETE FROM membership_member"))
    t = time.perf_counter()
    n = baseline_load(engine, path)
    baseline_s = time.perf_counter() - t
    assert n == args.size
    info = machine.describe(engine)
    result = compare_rate(f"import {args.size} rows: engine vs raw load", args.size / product_s, args.size / baseline_s, "rows/s",
                          "baseline: COPY (PostgreSQL) / executemany in one transaction (SQLite), no validation, audit or events")
    print(f"machine: {info['cores']} cores, {info['memory_gib']} GiB, {info['cpu']}; {info['database']}; commit {info['commit']}")
    print(result.line())
    print(f"engine CPU time in this process: {product_cpu:.1f}s ({args.size / product_cpu:,.0f} rows per CPU second; on SQLite this includes "
          "the database's own work, on PostgreSQL the server's is not in it)")
    print(f"engine: {product_s:.1f}s, batch size {args.batch_size}; raw: {baseline_s:.1f}s; peak RSS after import {rss_product} MiB, after raw {peak_rss_mib()} MiB")
    out = {"machine": info, "size": args.size, "batch_size": args.batch_size, "result": result.to_dict(), "engine_seconds": round(product_s, 2), "engine_cpu_seconds": round(product_cpu, 2),
           "raw_seconds": round(baseline_s, 2), "peak_rss_mib_after_import": rss_product, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (var / "imports-latest.json").write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
