"""`make bench`: seed N members, then measure the product paths against hand-written baselines.

    python -m bench [--size 100000] [--samples 200] [--database-url URL]

Without --database-url, CRMKIT_DATABASE_URL decides: a PostgreSQL URL makes the bench
create (and recreate) its own database `crmkit_bench` on that server; otherwise SQLite
under var/bench/. Results print as product vs baseline with the ratio, and go to
var/bench/latest.json and var/bench/latest.md.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.config import Settings

from . import machine
from .seed import seed_members
from .timing import compare_latency, compare_rate, sample

PAGE = 25


def prepare_database(url: str | None, var: Path, name: str = "crmkit_bench") -> str:
    if url and make_url(url).get_backend_name() == "postgresql":
        admin = create_engine(make_url(url).render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            c.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return make_url(url).set(database=name).render_as_string(hide_password=False)
    var.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{var / name}.db{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{(var / name).resolve()}.db"


def build_app(url: str, var: Path):
    from crmkit.runtime.installer import install
    from crmkit.runtime.services import Services
    from crmkit.runtime.storage.migrate import upgrade_platform
    from crmkit.runtime.web.app import create_app

    settings = Settings(database_url=url, secret_key="bench-secret-key-0123456789abcdef0123456789", var_dir=var, secure_cookies=False)  # plain http on 127.0.0.1
    s = Services.build(settings)
    upgrade_platform(s.engine)
    s.engine.dispose()
    app = create_app(settings)
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user("bench", "Bench", "User", "bench@example.com", sm.find_role("Admin"), "bench-pass")
        install(app.extensions["crmkit"], "membership")
    return app


class StatementCounter:
    def __init__(self, engine):
        self.statements: list[tuple[str, object]] = []
        self.engine = engine

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._on)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._on)

    def _on(self, conn, cursor, statement, params, context, executemany):
        if statement.split(None, 1)[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK"):  # SQLite's explicit BEGIN is not work
            self.statements.append((statement, params))


def explain(engine, statements) -> list[str]:
    out = []
    pg = engine.dialect.name == "postgresql"
    with engine.connect() as c:
        raw = c.connection.driver_connection
        for sql, params in statements:
            if not sql.lstrip().upper().startswith("SELECT") or "crmkit_meta_stamp" in sql:
                continue
            cur = raw.cursor()
            cur.execute(("EXPLAIN ANALYZE " if pg else "EXPLAIN QUERY PLAN ") + sql, params)
            plan = "\n".join(str(r[0] if pg else r[-1]) for r in cur.fetchall())
            cur.close()
            out.append(f"-- {' '.join(sql.split())[:160]}...\n{plan}")
    return out


def hand_written(engine, size_mid_cursor):
    """The same list work written by hand: page query, capped total, level labels."""
    cols = ("id, row_version, created_at, updated_at, created_by, updated_by, owner_id, org_unit_id, deleted_at, deleted_by, workflow_state, "
            "card_no, name, gender, birthday, mobile, email, id_number, level, joined_on, join_channel, status, tags, consent_sms, consent_email, "
            "consent_wechat, total_spent, address, notes")
    order = "ORDER BY joined_on DESC NULLS LAST, id DESC"
    page_sql = text(f"SELECT {cols} FROM membership_member WHERE deleted_at IS NULL {order} LIMIT {PAGE + 1}")
    # Written the way an index can serve it: each part of "after the cursor" as its own ordered, limited range.
    part = f"SELECT * FROM (SELECT {cols} FROM membership_member WHERE deleted_at IS NULL AND {{cond}} {order} LIMIT {PAGE + 1}) AS p{{n}}"
    deep_sql = text(" UNION ALL ".join(part.format(cond=c, n=n) for n, c in enumerate(
        ("joined_on < :v", "joined_on IS NULL", "joined_on = :v AND id < :i"))) + f" {order} LIMIT {PAGE + 1}")
    count_sql = text("SELECT count(*) FROM (SELECT id FROM membership_member WHERE deleted_at IS NULL LIMIT 1001) AS s")
    labels_sql = text("SELECT id, name FROM membership_level WHERE id IN ({})")

    def run(sql, params):
        with engine.connect() as c:
            rows = c.execute(sql, params).all()
            c.execute(count_sql).scalar_one()
            ids = sorted({r.level for r in rows if r.level is not None})
            if ids:
                c.execute(text(labels_sql.text.format(",".join(str(int(i)) for i in ids)))).all()
            return rows

    return (lambda: run(page_sql, {})), (lambda: run(deep_sql, size_mid_cursor))


def serve(app, port: int):
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args, **kwargs):  # thousands of samples would drown the figures
            pass

    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def add_plain_endpoint(app):
    """Baseline for the HTTP page: a plain Flask view running the hand-written SQL into a bare table."""
    from flask import render_template_string

    engine = app.extensions["crmkit"].engine
    page_fn, _ = hand_written(engine, {})
    tpl = "<table>{% for r in rows %}<tr><td>{{ r.card_no }}</td><td>{{ r.name }}</td><td>{{ r.mobile }}</td><td>{{ r.gender }}</td><td>{{ r.level }}</td><td>{{ r.status }}</td><td>{{ r.joined_on }}</td><td>{{ r.total_spent }}</td><td>{{ r.tags }}</td></tr>{% endfor %}</table>"

    def plain():
        return render_template_string(tpl, rows=page_fn()[:PAGE])

    app.add_url_rule("/bench/plain", "bench_plain", plain)

    def anonymous_list():
        """Baseline for authorization: the API's list work (query service + JSON) with no caller to check."""
        from flask import jsonify

        from crmkit.runtime.api.serialize import page_json

        services = app.extensions["crmkit"]
        catalog = services.store.catalog()
        entity = catalog.entity("membership.member")
        return jsonify(page_json(catalog, entity, services.queries.list(entity.key, SYSTEM, limit=50)))

    app.add_url_rule("/bench/anonymous-list", "bench_anonymous_list", anonymous_list)


AUTHORIZATION_TABLES = ("ab_user_role", "crmkit_policy_stamp", "crmkit_field_rule", "crmkit_row_scope", "ab_permission_view_role")


def authorization_statements(statements) -> int:
    return sum(1 for sql, _ in statements if any(t in sql for t in AUTHORIZATION_TABLES))


def http_sampler(port: int, path: str, cookie: str = "", headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get():
        conn.request("GET", path, headers={"Cookie": cookie, **(headers or {})} if cookie else dict(headers or {}))
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path} → {resp.status}: {body[:200]!r}")
        return body

    return get


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=int(os.environ.get("BENCH_SIZE", 100_000)))
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--creates", type=int, default=1000)
    ap.add_argument("--database-url", default=os.environ.get("CRMKIT_DATABASE_URL"))
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    var = Path(os.environ.get("CRMKIT_VAR_DIR", "var")) / "bench"
    url = prepare_database(args.database_url, var)
    print(f"bench: database {make_url(url).render_as_string(hide_password=True)}, {args.size} members")
    app = build_app(url, var)
    services = app.extensions["crmkit"]
    engine = services.engine
    t = time.perf_counter()
    seed_members(services, args.size)
    print(f"seeded {args.size} members in {time.perf_counter() - t:.1f}s")
    info = machine.describe(engine)
    results = []

    q = services.queries
    first = q.list("membership.member", SYSTEM, limit=PAGE)
    with engine.connect() as c:
        mid = c.execute(text("SELECT joined_on, id FROM membership_member WHERE deleted_at IS NULL "
                             "ORDER BY joined_on DESC NULLS LAST, id DESC LIMIT 1 OFFSET :o"), {"o": args.size // 2}).one()
    from crmkit.runtime.query.cursor import encode_cursor

    mid_day = mid.joined_on.isoformat() if hasattr(mid.joined_on, "isoformat") else str(mid.joined_on)  # SQLite returns text
    deep_cursor = encode_cursor(",".join(("-" if d else "") + n for n, d in first.sort), [mid_day, mid.id])
    hand_page, hand_deep = hand_written(engine, {"v": mid.joined_on, "i": mid.id})
    assert len(q.list("membership.member", SYSTEM, limit=PAGE, cursor=deep_cursor).rows) == len(hand_deep()[:PAGE])

    results.append(compare_latency("query service: list page 1", sample(lambda: q.list("membership.member", SYSTEM, limit=PAGE), args.samples), sample(hand_page, args.samples)))
    results.append(compare_latency(f"query service: deep page (row {args.size // 2})", sample(lambda: q.list("membership.member", SYSTEM, limit=PAGE, cursor=deep_cursor), args.samples), sample(hand_deep, args.samples)))

    # HTTP: the real list page vs a plain Flask endpoint, over a real socket.
    add_plain_endpoint(app)
    client = app.test_client()
    page = client.get("/login/").get_data(as_text=True)
    import re

    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or re.search(r'value="([^"]+)"[^>]*name="csrf_token"', page)
    client.post("/login/", data={"username": "bench", "password": "bench-pass", "csrf_token": token.group(1)})
    cookie = f"session={client.get_cookie('session').value}"
    jwt = client.post("/api/v1/security/login", json={"username": "bench", "password": "bench-pass", "provider": "db"}).get_json()["access_token"]
    bearer = {"Authorization": f"Bearer {jwt}"}
    api_list = "/api/v1/records/membership.member?limit=50"
    server = serve(app, args.port)
    try:
        product_http = sample(http_sampler(args.port, "/e/membership.member/", cookie), args.samples)
        deep_http = sample(http_sampler(args.port, f"/e/membership.member/?cursor={deep_cursor}", cookie), args.samples)
        plain_http = sample(http_sampler(args.port, "/bench/plain", cookie), args.samples)
        api_http = sample(http_sampler(args.port, api_list, headers=bearer), args.samples)
        anonymous_http = sample(http_sampler(args.port, "/bench/anonymous-list"), args.samples)
    finally:
        server.shutdown()
    results.append(compare_latency("API list, 50 rows, bearer token", api_http, anonymous_http,
                                   "baseline: the same list work with no authentication or authorization"))
    results.append(compare_latency("HTTP list page 1 (full UI page)", product_http, plain_http, "baseline: plain Flask view, same SQL by hand"))
    results.append(compare_latency("HTTP list deep page (full UI page)", deep_http, plain_http, "baseline: plain Flask view, page 1 by hand"))

    with StatementCounter(engine) as counter:
        client.get("/e/membership.member/")
    statements_per_request = len(counter.statements)
    client.get(api_list, headers=bearer)  # warm
    with StatementCounter(engine) as counter:
        client.get(api_list, headers=bearer)
    api_statements, api_authorization = len(counter.statements), authorization_statements(counter.statements)
    with StatementCounter(engine) as counter:
        client.get("/bench/anonymous-list")
    anonymous_statements = len(counter.statements)
    with StatementCounter(engine) as counter:
        q.list("membership.member", SYSTEM, limit=PAGE, cursor=deep_cursor)
    plans = explain(engine, counter.statements)

    # Writes: record service create vs a raw single-row INSERT, each in its own transaction.
    from .seed import member_rows

    rows = member_rows(args.creates, start=args.size + 1, level_ids=[1, 2, 3, 4], seed=7)
    for r in rows:
        r.pop("card_no")
    payloads = [{k: (v.isoformat() if hasattr(v, "isoformat") else (str(v) if k == "total_spent" else v)) for k, v in r.items()
                 if k not in ("created_at", "updated_at", "row_version")} for r in rows]
    for i, p in enumerate(payloads):
        p["mobile"] = f"139{i:08d}"
    t = time.perf_counter()
    for p in payloads:
        services.records.create("membership.member", p, SYSTEM)
    product_rate = len(payloads) / (time.perf_counter() - t)
    table = services.records.table_cache.tables(services.store.catalog())["membership.member"]
    raw_rows = member_rows(args.creates, start=args.size + args.creates + 1, level_ids=[1, 2, 3, 4], seed=8)
    for i, r in enumerate(raw_rows):
        r["mobile"] = f"137{i:08d}"
    from crmkit.runtime.db import write_transaction

    t = time.perf_counter()
    for r in raw_rows:
        with write_transaction(engine) as c:
            c.execute(table.insert().values(**r))
    raw_rate = len(raw_rows) / (time.perf_counter() - t)
    results.append(compare_rate("create record: record service vs raw INSERT", product_rate, raw_rate, "rows/s",
                                "product validates, checks uniqueness and links, numbers the card, writes audit + outbox"))

    print()
    print(f"machine: {info['cores']} cores, {info['memory_gib']} GiB, {info['cpu']}; {info['database']}; commit {info['commit']}")
    for r in results:
        print(r.line())
    print(f"SQL statements per list-page request: {statements_per_request}")
    print(f"SQL statements per API list request: {api_statements} with a bearer token ({api_authorization} for authorization), "
          f"{anonymous_statements} for the same work unauthenticated")
    print("\nEXPLAIN for the deep-page list query (query service):")
    for p in plans:
        print(p)
        print()
    out = {"machine": info, "size": args.size, "samples": args.samples, "results": [r.to_dict() for r in results],
           "statements_per_list_request": statements_per_request,
           "statements_per_api_list_request": {"authenticated": api_statements, "authorization": api_authorization,
                                               "unauthenticated_baseline": anonymous_statements},
           "explain": plans, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    var.mkdir(parents=True, exist_ok=True)
    (var / "latest.json").write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {var / 'latest.json'}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["imports"]:  # python -m bench imports: the import benchmark (bench/imports.py)
        from .imports import main as imports_main

        imports_main(sys.argv[2:])
    else:
        main()
