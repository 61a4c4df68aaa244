"""The service reports and dashboard on the demo data, checked against an independent Python computation over the
ticket rows read straight from the table: volume by channel / category, SLA attainment, response and resolution
times (stored durations recomputed from the business calendar; median and p90 by nearest rank), backlog age,
CSAT and per-agent load."""
from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core_support import fresh_services
from crmkit.apps.crm.calendar import load_calendar
from crmkit.apps.crm.demo_agents import AGENTS
from crmkit.apps.crm.service_stats import nearest_rank, percentiles, service_times
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.installer import install
from crmkit.runtime.reports import run_report

TICKET = "crm_service.ticket"
SH = ZoneInfo("Asia/Shanghai")
DONE = {"resolved", "closed"}


@pytest.fixture(scope="module")
def seeded(databases, tmp_path_factory):
    s = fresh_services(databases, tmp_path_factory)
    install(s, "crm_service", demo=True, demo_size=160)
    table = s.queries.table_cache.tables(s.store.catalog())[TICKET]
    with s.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(table).where(table.c.deleted_at.is_(None))).mappings()]
    yield s, rows
    s.engine.dispose()


def month(value: dt.datetime) -> str:
    value = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(SH).strftime("%Y-%m")


def report(s, name, **kw):
    return run_report(s, SYSTEM, s.store.catalog().report(f"crm_service.{name}"), {}, locale="en", **kw)


def keyed(result) -> dict:
    return {tuple(c.key for c in r.cells): r.values for r in result.rows}


def test_the_demo_fills_every_service_report_and_the_dashboard(seeded):
    s, rows = seeded
    catalog = s.store.catalog()
    names = sorted(k for k in catalog.reports if k.startswith("crm_service."))
    assert names == [f"crm_service.{n}" for n in ("agent_load", "backlog_age", "csat", "csat_by_rating", "response_times", "sla_attainment",
                                                  "volume_by_category", "volume_by_channel")]
    for name in names:
        res = run_report(s, SYSTEM, catalog.report(name), {}, locale="zh")
        assert res.rows or res.totals.get("score"), name
    dash = catalog.dashboards["crm_service.service"]
    assert {w.report for w in dash.widgets} == set(names)
    assert len(rows) == 80 and {r["status"] for r in rows} >= {"new", "open", "resolved", "closed"}


def test_volume_by_channel_and_category(seeded):
    s, rows = seeded
    res = report(s, "volume_by_channel")
    expected = Counter((month(r["opened_at"]), r["channel"]) for r in rows)
    got = {(row_key[0], col): v["tickets"] for (row_key, col), v in res.pivot.items() if v.get("tickets")}
    assert got == dict(expected) and len({m for m, _ in expected}) >= 10  # twelve months of tickets
    cat = keyed(report(s, "volume_by_category", expand=True))
    assert {k: v["tickets"] for k, v in cat.items()} == dict(Counter((r["category"], r["kind"]) for r in rows))
    top = keyed(report(s, "volume_by_category"))
    by_cat = Counter(r["category"] for r in rows)
    assert {k[0]: v["tickets"] for k, v in top.items()} == dict(by_cat)
    assert all(float(v["share"]) == pytest.approx(100 * by_cat[k[0]] / len(rows)) for k, v in top.items())


def test_sla_attainment(seeded):
    s, rows = seeded
    done = [r for r in rows if r["status"] in DONE]
    res = keyed(report(s, "sla_attainment"))
    states = Counter(r["sla_state"] for r in done)
    assert {k[0]: v["tickets"] for k, v in res.items()} == dict(states)
    assert set(states) <= {"met", "breached"} and states["met"] and states["breached"]  # the demo shows both
    assert float(res[("met",)]["share"]) == pytest.approx(100 * states["met"] / len(done))


def test_stored_durations_and_their_median_and_p90(seeded):
    s, rows = seeded
    cal = load_calendar()
    done = [r for r in rows if r["status"] in DONE]
    for r in done:  # the stored business minutes equal the calendar's count (the demo's resolved tickets never paused)
        utc = lambda v: v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)  # noqa: E731
        assert r["resolution_minutes"] == max(0, cal.minutes_between(utc(r["opened_at"]), utc(r["resolved_at"])) - (r["paused_minutes"] or 0))
        assert r["first_response_minutes"] == max(0, cal.minutes_between(utc(r["opened_at"]), utc(r["first_responded_at"])) - (r["paused_minutes"] or 0))

    def rank(values, p):
        values = sorted(values)
        return values[math.ceil(p / 100 * len(values)) - 1]

    times = service_times(s, SYSTEM)
    res_values = [r["resolution_minutes"] for r in rows if r["resolution_minutes"] is not None]
    fr_values = [r["first_response_minutes"] for r in rows if r["first_response_minutes"] is not None]
    assert (times["resolution_minutes"].median, times["resolution_minutes"].p90, times["resolution_minutes"].count) == (
        rank(res_values, 50), rank(res_values, 90), len(res_values))
    assert (times["first_response_minutes"].median, times["first_response_minutes"].p90) == (rank(fr_values, 50), rank(fr_values, 90))
    urgent = [r["resolution_minutes"] for r in rows if r["resolution_minutes"] is not None and r["priority"] == "urgent"]
    got = percentiles(s, SYSTEM, "resolution_minutes", filter={"field": "priority", "op": "eq", "value": "urgent"})
    assert (got.median, got.count) == ((rank(urgent, 50) if urgent else None), len(urgent))
    # the averages report agrees with the same rows, month by month
    avg = keyed(report(s, "response_times"))
    by_month: dict[str, list] = {}
    for r in rows:
        if r["resolution_minutes"] is not None:
            by_month.setdefault(month(r["opened_at"]), []).append(r["resolution_minutes"])
    for m, values in by_month.items():
        assert float(avg[(m,)]["resolution"]) == pytest.approx(sum(values) / len(values))


def test_nearest_rank_edges():
    assert nearest_rank([], 50) is None
    assert nearest_rank([(7, 1)], 90) == 7
    assert nearest_rank([(1, 1), (2, 1), (3, 1), (4, 1)], 50) == 2 and nearest_rank([(1, 1), (2, 1), (3, 1), (4, 1)], 90) == 4
    assert nearest_rank([(10, 9), (500, 1)], 90) == 10 and nearest_rank([(10, 8), (500, 2)], 90) == 500
    with pytest.raises(ValueError):
        percentiles(None, SYSTEM, "satisfaction")


def test_backlog_age_csat_and_agent_load(seeded):
    s, rows = seeded
    open_rows = [r for r in rows if r["status"] not in DONE]
    backlog = report(s, "backlog_age")
    got = {(k[0], col): v["tickets"] for (k, col), v in backlog.pivot.items() if v.get("tickets")}
    assert got == dict(Counter((month(r["opened_at"]), r["priority"]) for r in open_rows))
    rated = [r["satisfaction"] for r in rows if r["satisfaction"] is not None]
    csat = report(s, "csat")
    assert len(rated) >= 10 and csat.totals["rated"] == len(rated) and float(csat.totals["score"]) == pytest.approx(sum(rated) / len(rated))
    dist = keyed(report(s, "csat_by_rating"))
    assert {k[0]: v["rated"] for k, v in dist.items()} == dict(Counter(rated))
    load = report(s, "agent_load")
    got = {k[0]: v["tickets"] for k, v in keyed(load).items()}
    assert got == dict(Counter(r["assignee"] for r in open_rows))
    agents = {c.key: c.label for r in load.rows for c in r.cells if c.key is not None}
    assert set(agents.values()) == {a[0] for a in AGENTS}  # every demo agent carries some load


@pytest.fixture
def service_app(make_app):
    app = make_app("base")
    s = app.extensions["crmkit"]
    install(s, "crm_service")
    tid = s.records.create(TICKET, {"subject": "发票抬头错误", "priority": "urgent", "opened_at": "2026-03-02T09:00:00+08:00"}, SYSTEM)
    row = s.queries.get(TICKET, tid, SYSTEM)
    s.records.update(TICKET, tid, {"status": "resolved", "first_responded_at": "2026-03-02T09:45:00+08:00",
                                   "resolved_at": "2026-03-02T14:00:00+08:00"}, SYSTEM, expected_version=row["row_version"])
    return app


def test_the_service_times_page_shows_median_and_p90_to_staff_only(service_app):
    from conftest import login

    anon = service_app.test_client()
    assert anon.get("/crm/service/times").status_code in (302, 401, 403)  # no login, no figures
    c = service_app.test_client()
    login(c)
    html = c.get("/crm/service/times").get_data(as_text=True)
    # 09:00 → 14:00 with the 12–13 lunch break: 4 business hours; the first response took 45 minutes
    assert "服务用时" in html and "45 分钟" in html and "4.0 小时" in html
    with c.session_transaction() as sess:
        sess["locale"] = "en"
    en = c.get("/crm/service/times").get_data(as_text=True)
    assert "Service times" in en and "45 min" in en and "4.0 h" in en and "Urgent" in en
