"""Report and dashboard definitions: validation with file + pointer, and derived measures / KPI comparison."""
from __future__ import annotations

import copy
import datetime as dt
import decimal

import pytest

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import DefinitionError
from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.reports import run_report

BASE = {"name": "r", "label": {"zh": "报表", "en": "Report"}, "source": "membership.member",
        "groups": [{"field": "gender"}], "measures": [{"name": "n", "agg": "count"}]}


def report_doc(**over):
    body = copy.deepcopy(BASE)
    body.update(over)
    return RawDocument("report", "membership", body, "membership/reports/r.json")


@pytest.mark.parametrize("over, pointer, words", [
    ({"groups": [{"field": "gender", "bucket": "month"}]}, "/groups/0/bucket", "only date"),
    ({"groups": [{"field": "nope"}]}, "/groups/0/field", "not a field"),
    ({"groups": [{"field": "gender.name"}]}, "/groups/0/field", "only link fields"),
    ({"groups": [{"field": "tags"}]}, "/groups/0/field", "single values"),
    ({"measures": [{"name": "a", "agg": "avg", "field": "total_spent"}, {"name": "p", "agg": "percent_of_total", "of": "a"}]}, "/measures/1/of", "count or sum"),
    ({"measures": [{"name": "s", "agg": "sum", "field": "name"}]}, "/measures/0/field", "number field"),
    ({"measures": [{"name": "n", "agg": "median"}]}, "/measures/0/agg", ""),
    ({"output": {"type": "pivot"}}, "/columns", "pivot"),
    ({"output": {"type": "chart"}}, "/output/chart", "chart"),
    ({"sort": [{"by": "nobody"}]}, "/sort/0/by", "measure"),
    ({"prompts": [{"name": "p", "type": "date_range", "field": "gender"}]}, "/prompts/0/field", "date"),
    ({"source": "membership.ghost"}, "/source", "not an installed entity"),
    ({"filter": {"field": "ghost", "op": "eq", "value": 1}}, "/filter/field", "ghost"),
])
def test_bad_reports_are_refused_with_file_and_pointer(services, over, pointer, words):
    with pytest.raises(DefinitionError) as exc:
        services.store.save([report_doc(**over)])
    problems = exc.value.problems
    assert any(f == "membership/reports/r.json" and p == pointer and words in m for f, p, m in problems), problems
    assert "membership.r" not in services.store.catalog().reports  # nothing stored


def test_dashboard_must_name_known_reports(services):
    doc = RawDocument("dashboard", "membership", {"name": "d", "label": {"zh": "看板", "en": "Board"},
                                                  "widgets": [{"report": "membership.member_growth"}, {"report": "membership.ghost"}]}, "membership/dashboards/d.json")
    with pytest.raises(DefinitionError) as exc:
        services.store.save([doc])
    assert exc.value.problems == [("membership/dashboards/d.json", "/widgets/1/report", "dashboard widget names unknown report 'membership.ghost'")]


def test_installed_app_ships_its_reports_and_dashboard(services):
    catalog = services.store.catalog()
    assert {"membership.member_growth", "membership.members_by_level", "membership.level_gender_pivot", "membership.new_members_kpi"} <= set(catalog.reports)
    assert [w.report for w in catalog.dashboard("membership.overview").widgets][0] == "membership.new_members_kpi"
    assert services.store.history("report", "membership.member_growth")[0]["version"] == 1


def test_ratio_percent_and_kpi_comparison_match_python(services):
    rows = []
    for i in range(12):
        joined = dt.date(2025, 1, 10) + dt.timedelta(days=20 * i)
        body = {"name": f"k{i}", "mobile": f"1350000{i:04d}", "joined_on": joined.isoformat(), "join_channel": ("store", "online")[i % 2],
                "total_spent": str(100 + i)}
        services.records.create("membership.member", body, SYSTEM)
        rows.append((joined, body["join_channel"], decimal.Decimal(100 + i)))
    catalog = services.store.catalog()
    spend = run_report(services, SYSTEM, catalog.report("membership.spend_by_channel"), {}, expand=False, locale="zh")
    for r in spend.rows:
        mine = [x for x in rows if x[1] == r.cells[0].key]
        assert r.values["members"] == len(mine)
        assert abs(r.values["per_member"] - sum(x[2] for x in mine) / len(mine)) < decimal.Decimal("0.0001")
    kpi = catalog.report("membership.new_members_kpi")
    res = run_report(services, SYSTEM, kpi, {"p_joined": "custom", "p_joined_from": "2025-04-01", "p_joined_to": "2025-06-30"}, locale="zh")
    cur = sum(1 for x in rows if dt.date(2025, 4, 1) <= x[0] <= dt.date(2025, 6, 30))
    prev_start = dt.date(2025, 4, 1) - (dt.date(2025, 7, 1) - dt.date(2025, 4, 1))
    prev = sum(1 for x in rows if prev_start <= x[0] < dt.date(2025, 4, 1))
    assert res.compare["current"] == cur and res.compare["previous"] == prev
    assert res.compare["change"] == (decimal.Decimal(cur - prev) * 100 / prev if prev else None)
    growth = run_report(services, SYSTEM, catalog.report("membership.member_growth"), {}, locale="zh")
    assert abs(sum(r.values["share"] for r in growth.rows) - 100) < decimal.Decimal("0.0001")
