"""Reports under the policy: row scopes bound every total, hidden and masked fields are refused."""
from __future__ import annotations

import collections

import pytest

from crmkit.runtime.errors import BadQuery, PermissionDenied
from crmkit.runtime.query.aggregate import GroupSpec, MeasureSpec
from crmkit.runtime.reports import run_report

from policy_support import USERS, shared_scenario_fixture

shared_sc = shared_scenario_fixture()


COUNT = (MeasureSpec("n", "count"),)


def member_agg(sc, username, groups, measures=COUNT, **kw):
    return sc.services.queries.aggregate("membership.member", sc.actor(username), groups=groups, measures=list(measures), **kw)


@pytest.mark.parametrize("username", ["desk_sh", "mgr_east", "sales_bj", "lost_hq", "desk_sales"])
def test_scoped_totals_equal_the_sum_over_the_visible_rows_only(shared_sc, username):
    sc = shared_sc
    expected = sc.expected_member_ids(username)
    res = member_agg(sc, username, [GroupSpec("org_unit_id")], [MeasureSpec("n", "count"), MeasureSpec("spent", "sum", "total_spent")]
                     if username != "desk_sh" else [MeasureSpec("n", "count")])
    by_unit = collections.Counter(sc.members[m]["unit"] for m in expected)
    assert {r["keys"][0]: r["values"]["n"] for r in res.rows} == dict(by_unit)
    assert res.totals["n"] == len(expected)
    everything = member_agg(sc, username, [])
    assert everything.totals["n"] == len(expected)


def test_manager_sees_exactly_the_subtree(shared_sc):
    sc = shared_sc
    subtree = sc.subtree(sc.units["EAST"])
    res = member_agg(sc, "mgr_east", [GroupSpec("org_unit_id")])
    assert set(r["keys"][0] for r in res.rows) <= subtree
    assert res.totals["n"] == sum(1 for m in sc.members.values() if m["unit"] in subtree)
    assert res.totals["n"] < len(sc.members)


def test_hidden_field_cannot_be_grouped_measured_or_filtered(shared_sc):
    sc = shared_sc
    with pytest.raises(BadQuery) as exc:
        member_agg(sc, "desk_sh", [GroupSpec("id_number")])
    assert "id_number" in str(exc.value)
    with pytest.raises(BadQuery):
        member_agg(sc, "desk_sh", [], [MeasureSpec("n", "count_distinct", "id_number")])
    with pytest.raises(BadQuery):
        member_agg(sc, "desk_sh", [], filter={"field": "id_number", "op": "is_empty"})
    with pytest.raises(BadQuery):
        member_agg(sc, "sales_bj", [GroupSpec("notes")])


def test_masked_field_only_for_those_who_may_unmask(shared_sc):
    sc = shared_sc
    with pytest.raises(BadQuery) as exc:
        member_agg(sc, "desk_sh", [GroupSpec("mobile")])
    assert "masked" in str(exc.value)
    res = member_agg(sc, "mgr_east", [GroupSpec("mobile")])  # the manager may unmask mobile numbers
    assert res.totals["n"] == len(sc.expected_member_ids("mgr_east"))


def test_cannot_join_through_an_entity_the_actor_may_not_read(shared_sc):
    sc = shared_sc
    assert "read" not in sc.level_actions("sales_bj")
    with pytest.raises(BadQuery) as exc:
        member_agg(sc, "sales_bj", [GroupSpec("level.name")])
    assert "membership.level" in str(exc.value)
    ok = member_agg(sc, "desk_sh", [GroupSpec("level.name")])
    assert ok.totals["n"] == len(sc.expected_member_ids("desk_sh"))


def test_no_read_permission_no_report(shared_sc):
    sc = shared_sc
    report = sc.services.store.catalog().report("membership.members_by_level")
    with pytest.raises(PermissionDenied):
        run_report(sc.services, sc.actor("viewer"), report)


def test_shipped_report_totals_follow_the_scope(shared_sc):
    sc = shared_sc
    report = sc.services.store.catalog().report("membership.members_by_level")
    for username in ("desk_sh", "mgr_east"):
        res = run_report(sc.services, sc.actor(username), report, {}, locale="en")
        assert sum(r.values["members"] for r in res.rows) == len(sc.expected_member_ids(username))
        assert res.totals["members"] == len(sc.expected_member_ids(username))
        assert abs(sum(r.values["share"] for r in res.rows) - 100) < 0.001
    assert set(USERS)  # the scenario is the one the policy tests use
