"""Report benchmarks: a month-bucketed group-by report against the same hand-written SQL in the same run,
and the membership dashboard (6 widgets) over HTTP.

    python -m bench.reports [--size 100000] [--samples 50] [--database-url URL]

Uses the database set-up and seeding of ``python -m bench`` (its own crmkit_bench database on PostgreSQL).
Results print and go to var/bench/reports-latest.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.query.aggregate import GroupSpec, MeasureSpec

from . import machine
from .__main__ import StatementCounter, build_app, http_sampler, serve
from .seed import seed_members
from .timing import compare_latency, sample


def prepare_database(url: str | None, var: Path) -> str:
    """Like ``python -m bench``'s, but its own database (crmkit_bench_reports / reports.db), so both can run at once."""
    from sqlalchemy import create_engine

    if url and make_url(url).get_backend_name() == "postgresql":
        admin = create_engine(make_url(url).render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'crmkit_bench_reports' AND pid <> pg_backend_pid()"))
            c.execute(text('DROP DATABASE IF EXISTS "crmkit_bench_reports"'))
            c.execute(text('CREATE DATABASE "crmkit_bench_reports"'))
        admin.dispose()
        return make_url(url).set(database="crmkit_bench_reports").render_as_string(hide_password=False)
    var.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{var / 'reports.db'}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{(var / 'reports.db').resolve()}"


def hand_written_month_sql(dialect: str) -> str:
    """What a developer would write for "members and spend per month and level"."""
    month = "to_char(joined_on, 'YYYY-MM')" if dialect == "postgresql" else "strftime('%Y-%m', joined_on)"
    return (f"SELECT {month} AS month, level, count(*) AS n, sum(total_spent) AS spent FROM membership_member "
            f"WHERE deleted_at IS NULL GROUP BY {month}, level ORDER BY 1, 2")


def hand_written_dashboard(engine):
    """The six widgets' aggregations by hand (no labels, no permissions), one statement each."""
    pg = engine.dialect.name == "postgresql"
    month = "to_char(joined_on, 'YYYY-MM')" if pg else "strftime('%Y-%m', joined_on)"
    sqls = [
        "SELECT count(*) FROM membership_member WHERE deleted_at IS NULL AND joined_on >= :a AND joined_on < :b",
        "SELECT status, count(*) FROM membership_member WHERE deleted_at IS NULL GROUP BY status ORDER BY 2 DESC",
        "SELECT gender, count(*) FROM membership_member WHERE deleted_at IS NULL GROUP BY gender",
        f"SELECT {month}, count(*) FROM membership_member WHERE deleted_at IS NULL GROUP BY 1 ORDER BY 1",
        "SELECT level, count(*), avg(total_spent) FROM membership_member WHERE deleted_at IS NULL GROUP BY level ORDER BY 2 DESC",
        "SELECT m.join_channel, l.name, sum(m.total_spent), count(*) FROM membership_member m LEFT JOIN membership_level l ON l.id = m.level "
        "WHERE m.deleted_at IS NULL GROUP BY 1, 2",
    ]
    import datetime as dt

    today = dt.date.today()
    params = {"a": today.replace(day=1), "b": (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)}

    def run():
        with engine.connect() as c:
            for s in sqls:
                c.execute(text(s), params).all()

    return run


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=int(os.environ.get("BENCH_SIZE", 100_000)))
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--database-url", default=os.environ.get("CRMKIT_DATABASE_URL"))
    ap.add_argument("--port", type=int, default=8766)
    args = ap.parse_args()
    var = Path(os.environ.get("CRMKIT_VAR_DIR", "var")) / "bench"
    url = prepare_database(args.database_url, var)
    print(f"bench.reports: database {make_url(url).render_as_string(hide_password=True)}, {args.size} members")
    app = build_app(url, var)
    services = app.extensions["crmkit"]
    engine = services.engine
    t = time.perf_counter()
    seed_members(services, args.size)
    print(f"seeded {args.size} members in {time.perf_counter() - t:.1f}s")
    info = machine.describe(engine)
    results = []

    groups = [GroupSpec("joined_on", "month"), GroupSpec("level")]
    measures = [MeasureSpec("n", "count"), MeasureSpec("spent", "sum", "total_spent")]
    q = services.queries

    def product():
        return q.aggregate("membership.member", SYSTEM, groups=groups, measures=measures)

    hand_sql = text(hand_written_month_sql(engine.dialect.name))

    def hand():
        with engine.connect() as c:
            return c.execute(hand_sql).all()

    got = {(r["keys"][0], r["keys"][1]): r["values"]["n"] for r in product().rows}
    want = {(r.month, r.level): r.n for r in hand()}
    assert got == want, "the report and the hand-written SQL disagree"
    results.append(compare_latency("report: month × level, count + sum", sample(product, args.samples), sample(hand, args.samples),
                                   "baseline: the same GROUP BY written by hand (no row scope, no window totals)"))
    report = services.store.catalog().report("membership.member_growth")
    from crmkit.runtime.reports import run_report

    month = "to_char(joined_on, 'YYYY-MM')" if engine.dialect.name == "postgresql" else "strftime('%Y-%m', joined_on)"
    count_sql = text(f"SELECT {month}, level, count(*) FROM membership_member WHERE deleted_at IS NULL GROUP BY 1, 2 ORDER BY 1, 2")

    def hand_count():
        with engine.connect() as c:
            return c.execute(count_sql).all()

    results.append(compare_latency("report: member_growth, all levels (labels, %)", sample(lambda: run_report(services, SYSTEM, report, {}, expand=True), args.samples),
                                   sample(hand_count, args.samples), "baseline: the same month × level count by hand"))

    client = app.test_client()
    page = client.get("/login/").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or re.search(r'value="([^"]+)"[^>]*name="csrf_token"', page)
    client.post("/login/", data={"username": "bench", "password": "bench-pass", "csrf_token": token.group(1)})
    cookie = f"session={client.get_cookie('session').value}"
    with StatementCounter(engine) as counter:
        assert client.get("/dashboards/membership.overview/").status_code == 200
    dashboard_statements = len(counter.statements)
    server = serve(app, args.port)
    try:
        dash = sample(http_sampler(args.port, "/dashboards/membership.overview/", cookie), args.samples)
    finally:
        server.shutdown()
    results.append(compare_latency("HTTP dashboard, 6 widgets (full page)", dash, sample(hand_written_dashboard(engine), args.samples),
                                   "baseline: the six aggregations by hand, no page"))

    print()
    print(f"machine: {info['cores']} cores, {info['memory_gib']} GiB, {info['cpu']}; {info['database']}; commit {info['commit']}")
    for r in results:
        print(r.line())
    print(f"SQL statements per dashboard request: {dashboard_statements}")
    out = {"machine": info, "size": args.size, "samples": args.samples, "results": [r.to_dict() for r in results],
           "statements_per_dashboard_request": dashboard_statements, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    var.mkdir(parents=True, exist_ok=True)
    (var / "reports-latest.json").write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {var / 'reports-latest.json'}")


if __name__ == "__main__":
    main()
