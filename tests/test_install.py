"""Installing an app: validate → plan → migrate → seed, through the one write path; twice is a no-op."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, inspect, select

from core_support import fresh_services
from crmkit.apps.membership.ledger import check_invariants
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.fields.identity import id_number_problem
from crmkit.runtime.fields.text import normalize_phone
from crmkit.runtime.installer import install, install_order, installed_apps
from crmkit.runtime.packages import UnknownApp, discover
from crmkit.runtime.storage import platform_tables as pt
from crmkit.runtime.storage.plan import Planner


@pytest.fixture
def services(databases, tmp_path_factory):
    s = fresh_services(databases, tmp_path_factory)
    yield s
    s.engine.dispose()


def count(s, table, *where):
    with s.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def test_install_with_demo_data_creates_levels_and_valid_members(services):
    messages = []
    report = install(services, "membership", demo=True, demo_size=30, progress=messages.append)
    assert report.installed == ["membership"] and report.documents_changed
    steps = [s.op for s in report.plan.steps].count("create_table")
    assert steps == 20, steps  # with the join application, card history, coupons, level history, lifecycle parameters, segments, care and activities
    orders = services.queries.list("membership.order", SYSTEM, count="exact").total
    assert orders >= 15
    joined = services.queries.list("membership.member", SYSTEM, count="exact").total - 30  # approved demo applications
    history = services.queries.list("membership.card_history", SYSTEM, count="exact").total
    applications = services.queries.list("membership.application", SYSTEM, count="exact").total
    coupons = services.queries.list("membership.coupon", SYSTEM, count="exact").total
    assert joined > 0 and applications >= 12 and coupons >= 30
    activity_records = sum(services.queries.list(f"membership.{e}", SYSTEM, count="exact").total
                           for e in ("segment", "care", "activity", "activity_registration"))
    attended = services.queries.list("membership.activity_registration", SYSTEM, filter={"field": "status", "op": "eq", "value": "attended"},
                                     count="exact").total
    assert activity_records >= 4 + 4 + 60 and attended > 0  # segments and a care campaign, 4 activities, their registrations
    # levels + members; plan and 3 items; stores; rewards; orders; coupon templates + coupons; applications, approved members, card history;
    # the lifecycle parameters
    assert report.seeded == 34 + 4 + 4 + 4 + orders + 3 + coupons + applications + joined + history + 1 + activity_records, report.seeded
    assert any("Create table membership_member" in m for m in messages)
    assert any("Created app tables: " in m and "membership_pts_entry" in m for m in messages)
    assert installed_apps(services) == {"membership": "0.2.0"}
    assert {"membership_member", "membership_level", "membership_pts_entry", "membership_pts_line"} <= set(inspect(services.engine).get_table_names())

    q = services.queries
    levels = q.list("membership.level", SYSTEM, sort=["level_value"], limit=10).rows
    assert [lv["code"] for lv in levels] == ["SILVER", "GOLD", "PLATINUM", "DIAMOND"]
    members = q.list("membership.member", SYSTEM, sort=["id"], limit=100, count="exact")
    assert members.total == 30 + joined
    assert all(m["lifecycle_stage"] and m["rfm_segment"] for m in members.rows)  # the demo's last seeder computes every stage
    assert all(re.fullmatch(r"VIP\d{8}|MC\d{9}", m["card_no"]) for m in members.rows)
    assert len({m["card_no"] for m in members.rows}) == members.total
    level_names = {lv["id"]: lv["name"] for lv in levels}
    for m in members.rows[:30]:  # the seeded members (approved applications follow)
        assert re.fullmatch(r"[\u4e00-\u9fff]{2,4}", m["name"]), m["name"]
        assert normalize_phone(m["mobile"]) == m["mobile"]
        assert m["id_number"] is None or id_number_problem(m["id_number"]) is None
        assert m["_labels"]["level"] == level_names[m["level"]]
        assert m["status"] in ("active", "lost", "cancelled") and m["gender"] in ("male", "female")
    assert len({m["mobile"] for m in members.rows}) == members.total
    # demo records went through the record service: one audit entry and one event each
    assert count(services, pt.audit, pt.audit.c.entity == "membership.member", pt.audit.c.action == "create") == members.total
    assert count(services, pt.audit, pt.audit.c.entity == "membership.level", pt.audit.c.action == "create") == 4
    # ... plus the level history rows the order listener wrote when demo orders moved a member up a level
    upgrades = services.queries.list("membership.level_change", SYSTEM, count="exact").total
    assert count(services, pt.outbox, pt.outbox.c.topic == "record.created") == report.seeded + upgrades
    # paid demo orders earned points through the order listener, and the ledger is sound
    assert count(services, pt.outbox, pt.outbox.c.topic == "points.earn") > 0
    with services.engine.connect() as conn:
        assert check_invariants(conn) == []


def test_installing_twice_is_idempotent(services):
    install(services, "membership", demo=True, demo_size=5)
    tables = sorted(inspect(services.engine).get_table_names())
    stamp = services.store.stamp()
    members = services.queries.list("membership.member", SYSTEM, count="exact").total
    permission_events = count(services, pt.audit, pt.audit.c.category == "permission")
    again = install(services, "membership", demo=True, demo_size=5)
    assert again.plan.empty and not again.documents_changed and again.installed == [] and again.seeded == 0
    assert sorted(inspect(services.engine).get_table_names()) == tables
    assert services.store.stamp() == stamp
    assert Planner(services.engine, services.store.catalog()).plan().empty
    assert count(services, pt.installed_app) == 1
    assert services.queries.list("membership.member", SYSTEM, count="exact").total == members >= 5
    assert services.queries.list("membership.level", SYSTEM, count="exact").total == 4
    assert count(services, pt.audit, pt.audit.c.category == "permission") == permission_events > 0  # the roles: nothing changed
    assert services.store.history("entity", "membership.member")[-1]["version"] == 1


def test_install_without_demo_data_creates_empty_tables(services):
    report = install(services, "membership")
    assert report.seeded == 0
    assert services.queries.list("membership.member", SYSTEM, count="exact").total == 0
    member = services.store.catalog().entity("membership.member")
    assert member.field("card_no").read_only and member.field("mobile").unique


def test_unknown_app_is_refused_clearly(services):
    with pytest.raises(UnknownApp) as info:
        install(services, "nope")
    assert info.value.status == 404 and "There is no app named 'nope'" in info.value.message
    assert installed_apps(services) == {}


def test_dependencies_install_first():
    packages = discover()
    assert "membership" in packages
    assert install_order("membership", packages) == ["membership"]
