"""Report pages: rendering, drill-down to the exact record set, exports with neutralised cells."""
from __future__ import annotations

import collections
import csv
import io
import re
import urllib.parse

import pytest
from openpyxl import load_workbook

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.reports.buckets import bucket_of

PAYLOAD_LEVELS = ["=HYPERLINK(\"http://x\")", "  @SUM(A1)", "\t-3+3", "+cmd", "普通等级"]


def seed_members(services, n=30):
    import datetime as dt

    levels = [services.records.create("membership.level", {"name": name, "code": f"L{i}", "level_value": i * 10}, SYSTEM)
              for i, name in enumerate(PAYLOAD_LEVELS)]
    members = []
    for i in range(n):
        joined = dt.date(2025, 1, 1) + dt.timedelta(days=(i * 23) % 300)
        body = {"name": f"会员{i:03d}", "mobile": f"139{i:08d}", "joined_on": joined.isoformat(), "gender": ("male", "female", None)[i % 3],
                "level": levels[i % len(levels)] if i % 7 else None, "join_channel": ("store", "online", "referral")[i % 3],
                "total_spent": str(i * 100)}
        mid = services.records.create("membership.member", body, SYSTEM)
        members.append({"id": mid, **body, "joined": joined})
    return levels, members


@pytest.fixture
def seeded(app, services):
    return seed_members(services)


def names_on_list(client, url):
    sep = "&" if "?" in url else "?"
    html = client.get(url + sep + "per_page=200").get_data(as_text=True)
    return set(re.findall(r"会员\d{3}", html))


def test_report_center_and_every_shipped_report_render(client, seeded):
    index = client.get("/reports/")
    assert index.status_code == 200
    html = index.get_data(as_text=True)
    for key in ("membership.member_growth", "membership.members_by_level", "membership.level_gender_pivot", "membership.overview"):
        assert key in html
    for key in ("member_growth", "members_by_level", "member_gender", "level_gender_pivot", "new_members_kpi", "spend_by_channel", "card_status_funnel"):
        resp = client.get(f"/reports/membership.{key}/")
        assert resp.status_code == 200, (key, resp.get_data(as_text=True)[:400])


def test_month_report_counts_and_drill_down_to_the_exact_records(client, seeded):
    _, members = seeded
    html = client.get("/reports/membership.member_growth/").get_data(as_text=True)
    months = collections.Counter(bucket_of("month", m["joined"]) for m in members)
    month, count = sorted(months.items())[2]
    y, mo = month.split("-")
    assert f"{int(y)}年{int(mo)}月" in html or f"{y}-{mo}" in html
    # Level 2: the month's members by level, through htmx (the region only).
    d = urllib.parse.quote(f'["{month}"]')
    region = client.get(f"/reports/membership.member_growth/?d={d}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert region.lstrip().startswith("<div id=\"report-region\"")
    in_month = [m for m in members if bucket_of("month", m["joined"]) == month]
    assert len(in_month) == count
    # Final level: each level's records through the list page's own filter.
    for level in {m["level"] for m in in_month}:
        target = client.get("/reports/membership.member_growth/records", query_string={"d": f'["{month}", {"null" if level is None else level}]'})
        assert target.status_code == 302
        location = target.headers["Location"]
        assert location.startswith("/e/membership.member/")
        expected = {m["name"] for m in in_month if m["level"] == level}
        assert names_on_list(client, location) == expected


def test_joined_path_drill_reaches_the_exact_records(client, seeded):
    levels, members = seeded
    # spend_by_channel: channel → gender, with level.name across; a pivot cell opens channel + level name.
    resp = client.get("/reports/membership.spend_by_channel/records", query_string={"d": '["online"]', "c": '"普通等级"'})
    location = resp.headers["Location"]
    assert "fo=in" in location
    expected = {m["name"] for m in members if m["join_channel"] == "online" and m["level"] == levels[4]}
    assert names_on_list(client, location) == expected and expected


def test_pivot_renders_rows_by_columns(client, seeded):
    _, members = seeded
    html = client.get("/reports/membership.level_gender_pivot/").get_data(as_text=True)
    assert "男" in html and "女" in html
    assert f">{len(members)}<" in html.replace(",", "")  # the grand total


def test_exports_neutralise_formulas(client, seeded):
    resp = client.get("/reports/membership.members_by_level/export.xlsx")
    assert resp.status_code == 200
    wb = load_workbook(io.BytesIO(resp.data))
    ws = wb.active
    values = [c for row in ws.iter_rows(values_only=True) for c in row if isinstance(c, str)]
    from crmkit.runtime.spreadsheet import needs_quote

    assert not [v for v in values if needs_quote(v)]  # nothing a spreadsheet would run
    assert any(v == "'=HYPERLINK(\"http://x\")" for v in values)
    assert any(v in ("'  @SUM(A1)", "'@SUM(A1)") for v in values)  # the text field may trim the spaces on input
    rows = list(csv.reader(io.StringIO(client.get("/reports/membership.members_by_level/export.csv").data.decode("utf-8-sig"))))
    flat = [c for r in rows for c in r]
    assert "'+cmd" in flat and "'=HYPERLINK(\"http://x\")" in flat
    assert not any(c.startswith(("=", "+", "@")) for c in flat)


def test_masked_or_hidden_group_is_a_400_with_a_clear_message(app, services):
    from crmkit.runtime.meta.compile import RawDocument

    from conftest import login
    from policy_support import PASSWORD, build_scenario

    sc = build_scenario(app)
    services.store.save([RawDocument("report", "membership", {
        "name": "by_mobile", "label": {"zh": "按手机", "en": "By mobile"}, "source": "membership.member",
        "groups": [{"field": "mobile"}], "measures": [{"name": "n", "agg": "count"}]}, "test")])
    services.store.save([RawDocument("report", "membership", {
        "name": "by_id_number", "label": {"zh": "按身份证", "en": "By ID"}, "source": "membership.member",
        "groups": [{"field": "id_number"}], "measures": [{"name": "n", "agg": "count"}]}, "test")])
    desk = app.test_client()
    login(desk, "desk_sh", PASSWORD)
    masked = desk.get("/reports/membership.by_mobile/")
    assert masked.status_code == 400
    assert "脱敏" in masked.get_data(as_text=True)
    hidden = desk.get("/reports/membership.by_id_number/")
    assert hidden.status_code == 400 and "id_number" in hidden.get_data(as_text=True)
    assert "1380" not in masked.get_data(as_text=True)  # no value leaks in the refusal
    manager = app.test_client()
    login(manager, "mgr_east", PASSWORD)
    ok = manager.get("/reports/membership.by_mobile/")  # the manager may unmask mobile numbers
    assert ok.status_code == 200
    assert sc.expected_member_ids("mgr_east")


def test_pages_speak_english_too(client, seeded):
    client.get("/locale/en")
    html = client.get("/reports/membership.members_by_level/").get_data(as_text=True)
    assert "Members by level" in html and "Total" in html and "Export Excel" in html and "合计" not in html
    dash = client.get("/dashboards/membership.overview/").get_data(as_text=True)
    assert "Membership overview" in dash and "vs previous period" in dash
