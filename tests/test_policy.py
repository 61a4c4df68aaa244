"""The policy point: field rules, row scopes, masking, union over roles, the stamp cache, and write guards."""
from __future__ import annotations

import pytest
from sqlalchemy import event, select

from crmkit.runtime.actor import Actor
from crmkit.runtime.errors import BadQuery, PermissionDenied, RecordNotFound, ValidationFailed
from crmkit.runtime.permissions.admin import PermissionAdmin
from crmkit.runtime.permissions.masking import mask_value
from crmkit.runtime.storage import platform_tables as pt

from policy_support import build_scenario, shared_scenario_fixture, valid_id_number

MEMBER = "membership.member"


@pytest.fixture
def sc(app):
    return build_scenario(app)


shared_sc = shared_scenario_fixture()  # for tests that change nothing


def test_mask_styles():
    assert mask_value("id_number", "110101199001011234") == "110101********1234"
    assert mask_value("mobile", "13812345678") == "138****5678"
    assert mask_value("name", "张三") == "张*"
    assert mask_value("name", "欧阳娜娜") == "欧***"
    assert mask_value("email", "zhang@example.com") == "z***@example.com"
    assert mask_value("mobile", "123") == "1**"
    assert mask_value("mobile", None) is None and mask_value("email", "") == ""


def test_meta_schema_refuses_an_unknown_mask_style(services):
    from crmkit.runtime.errors import DefinitionError
    from crmkit.runtime.meta.compile import RawDocument

    body = {"id": "ent_x_thing", "name": "thing", "label": "Thing", "title_field": "name",
            "fields": [{"id": "fld_x_name", "name": "name", "type": "text", "label": "Name", "mask": "everything"}]}
    with pytest.raises(DefinitionError) as info:
        services.store.preview([RawDocument("app", "x", {"id": "x", "version": "1.0.0", "title": "X"}, "x/app.json"),
                                RawDocument("entity", "x", body, "x/entities/thing.json")])
    assert "/fields/0/mask" in str(info.value)


def test_row_scopes_follow_the_org_tree(shared_sc):
    sc = shared_sc
    q = sc.services.queries
    for username in ("desk_sh", "mgr_east", "sales_bj", "lost_hq", "desk_sales"):
        page = q.list(MEMBER, sc.actor(username), limit=200, count="exact")
        assert {r["id"] for r in page.rows} == sc.expected_member_ids(username), username
        assert page.total == len(sc.expected_member_ids(username))
    # the manager of EAST sees EAST, SH and HZ rows — and nothing from NORTH/BJ/HQ
    units = {sc.members[r["id"]]["unit"] for r in q.list(MEMBER, sc.actor("mgr_east"), limit=200).rows}
    assert units == {sc.units["EAST"], sc.units["SH"], sc.units["HZ"]}


def test_hidden_fields_are_absent_everywhere_and_cannot_be_filtered_or_sorted(shared_sc):
    sc = shared_sc
    q = sc.services.queries
    actor = sc.actor("sales_bj")
    rid = next(iter(sc.expected_member_ids("sales_bj")))
    row = q.get(MEMBER, rid, actor)
    assert "notes" not in row and "address" not in row and "id_number" not in row and "name" in row
    for r in q.list(MEMBER, actor, limit=50).rows:
        assert not {"notes", "address", "id_number"} & set(r) and not {"notes", "address"} & set(r["_labels"])
    with pytest.raises(BadQuery):
        q.list(MEMBER, actor, filter={"field": "notes", "op": "contains", "value": "note"})
    with pytest.raises(BadQuery):
        q.list(MEMBER, actor, sort=["-address"])
    with pytest.raises(BadQuery):
        q.list(MEMBER, actor, fields=["notes"])
    # the audit timeline leaves the hidden fields out too
    history = q.history(MEMBER, rid, actor)
    assert history and all(not {"notes", "address", "id_number"} & set(h["changes"]) for h in history)
    assert "name" in history[-1]["changes"]


def test_union_over_roles_takes_the_widest_access(shared_sc):
    sc = shared_sc
    q, pol = sc.services.queries, sc.services.policy
    member = sc.services.store.catalog().entity(MEMBER)
    both = sc.actor("desk_sales")  # FrontDesk (org unit BJ) + Sales (own)
    assert {r["id"] for r in q.list(MEMBER, both, limit=200).rows} == sc.expected_member_ids("desk_sales")
    # FrontDesk hides id_number, Sales hides it too: hidden. Sales hides notes, FrontDesk does not: readable.
    readable = set(pol.readable_fields(both, member))
    assert "id_number" not in readable and "notes" in readable and "address" in readable
    # total_spent: FrontDesk read-only, Sales editable → editable
    assert "total_spent" in pol.writable_fields(both, member)
    assert "total_spent" not in pol.writable_fields(sc.actor("desk_sh"), member)


def test_masked_values_in_list_get_history_options_and_labels(sc):
    q = sc.services.queries
    admin = Actor(id=None, username="system", is_admin=True)
    rid = next(iter(sc.members))
    sc.services.records.update(MEMBER, rid, {"id_number": valid_id_number(7)}, admin, expected_version=1)
    for username in ("mgr_east", "desk_sh"):
        actor = sc.actor(username)
        ids = sc.expected_member_ids(username)
        for r in q.list(MEMBER, actor, limit=200).rows:
            assert r["mobile"].startswith("138****") and len(r["mobile"]) == 11
            assert r["email"].startswith("m") and "***@example.com" in r["email"]
        if rid in ids:
            got = q.get(MEMBER, rid, actor)
            assert got["mobile"] == mask_value("mobile", "13800000001")
    got = q.get(MEMBER, rid, admin)
    assert got["id_number"] == "110101********" + valid_id_number(7)[-4:]
    history = q.history(MEMBER, rid, admin)
    assert history[0]["changes"]["id_number"] == [None, mask_value("id_number", valid_id_number(7))]
    assert all("138000" not in str(h["changes"].get("mobile")) for h in history)


def test_filter_and_sort_on_a_masked_field_need_the_unmask_right(shared_sc):
    sc = shared_sc
    q = sc.services.queries
    desk = sc.actor("desk_sh")
    with pytest.raises(BadQuery):
        q.list(MEMBER, desk, filter={"field": "mobile", "op": "starts_with", "value": "1380"})
    with pytest.raises(BadQuery):
        q.list(MEMBER, desk, sort=["mobile"])
    # search matches a masked field only by its exact value, never by a fragment
    mid = next(iter(sc.expected_member_ids("desk_sh")))
    number = f"138{sc.members[mid]['n']:08d}"
    assert [r["id"] for r in q.list(MEMBER, desk, search=number).rows] == [mid]
    assert q.list(MEMBER, desk, search=number[:6]).rows == []
    # the manager may unmask mobile, so may filter on it
    mgr = sc.actor("mgr_east")
    assert q.list(MEMBER, mgr, filter={"field": "mobile", "op": "starts_with", "value": "138"}, limit=200).rows


def test_unmask_needs_the_right_and_is_audited(sc):
    q = sc.services.queries
    mid = next(m for m in sc.expected_member_ids("mgr_east"))
    real = f"138{sc.members[mid]['n']:08d}"
    assert q.unmask(MEMBER, mid, "mobile", sc.actor("mgr_east"), request_id="r-1") == real
    with sc.services.engine.connect() as conn:
        rows = conn.execute(select(pt.audit).where(pt.audit.c.category == "unmask")).mappings().all()
    assert len(rows) == 1 and rows[0]["record_id"] == mid and rows[0]["subject"] == "mobile" and real not in str(dict(rows[0]))
    with pytest.raises(PermissionDenied):
        q.unmask(MEMBER, next(iter(sc.expected_member_ids("desk_sh"))), "mobile", sc.actor("desk_sh"))
    with pytest.raises(BadQuery):
        q.unmask(MEMBER, mid, "name", sc.actor("mgr_east"))
    out_of_scope = next(m for m in sc.members if m not in sc.expected_member_ids("mgr_east"))
    with pytest.raises(RecordNotFound):
        q.unmask(MEMBER, out_of_scope, "mobile", sc.actor("mgr_east"))


def test_writes_are_limited_to_visible_rows(sc):
    r = sc.services.records
    desk = sc.actor("desk_sh")
    outside = next(m for m in sc.members if m not in sc.expected_member_ids("desk_sh"))
    with pytest.raises(RecordNotFound):
        r.update(MEMBER, outside, {"name": "改名"}, desk, expected_version=1)
    mgr = sc.actor("mgr_east")
    outside_mgr = next(m for m in sc.members if m not in sc.expected_member_ids("mgr_east"))
    with pytest.raises(RecordNotFound):
        r.delete(MEMBER, outside_mgr, mgr)
    with pytest.raises(RecordNotFound):
        r.bulk_update(MEMBER, [next(iter(sc.expected_member_ids("mgr_east"))), outside_mgr], {"notes": "x"}, mgr)
    admin = Actor(id=None, username="system", is_admin=True)
    assert sc.services.queries.get(MEMBER, outside_mgr, admin)["notes"] != "x"


def test_mass_assignment_is_refused_and_system_fields_are_not_forged(sc):
    r, q = sc.services.records, sc.services.queries
    admin = Actor(id=None, username="system", is_admin=True)
    desk = sc.actor("desk_sh")
    mid = next(iter(sc.expected_member_ids("desk_sh")))
    before = q.get(MEMBER, mid, admin)
    # a hidden field, whatever the value — even its current one
    for value in ("110101199001011234", before.get("id_number") or "x"):
        with pytest.raises(ValidationFailed) as info:
            r.update(MEMBER, mid, {"id_number": value}, desk, expected_version=before["row_version"])
        assert "id_number" in info.value.field_errors
    # a read-only field
    with pytest.raises(ValidationFailed) as info:
        r.update(MEMBER, mid, {"total_spent": "99999"}, desk, expected_version=before["row_version"])
    assert info.value.field_errors == {"total_spent": ["You may not change this field."]}
    # system columns: silently kept as the system sets them
    r.update(MEMBER, mid, {"name": "新名字", "owner_id": 999, "org_unit_id": sc.units["BJ"], "created_by": 5}, desk,
             expected_version=before["row_version"])
    after = q.get(MEMBER, mid, admin)
    assert (after["owner_id"], after["org_unit_id"], after["created_by"]) == (before["owner_id"], before["org_unit_id"], before["created_by"])
    assert after["name"] == "新名字" and after["total_spent"] == before["total_spent"]
    # create: a new record gets the actor as owner and the actor's unit
    new_id = r.create(MEMBER, {"name": "新会员", "mobile": "13900000001", "joined_on": "2024-02-02", "owner_id": 1}, desk)
    created = q.get(MEMBER, new_id, admin)
    assert created["owner_id"] == desk.id and created["org_unit_id"] == sc.units["SH"]


def test_masked_value_sent_back_unchanged_keeps_the_real_value(sc):
    r, q = sc.services.records, sc.services.queries
    admin = Actor(id=None, username="system", is_admin=True)
    mid = next(iter(sc.expected_member_ids("desk_sh")))
    shown = q.get(MEMBER, mid, sc.actor("desk_sh"))
    r.update(MEMBER, mid, {"mobile": shown["mobile"], "name": "同号"}, sc.actor("desk_sh"), expected_version=shown["row_version"])
    real = q.unmask(MEMBER, mid, "mobile", admin)
    assert real == f"138{sc.members[mid]['n']:08d}"


def test_scoped_user_cannot_create_outside_their_scope(shared_sc):
    sc = shared_sc
    # LostDesk sees only lost members; it has no create right at all
    with pytest.raises(PermissionDenied):
        sc.services.records.create(MEMBER, {"name": "x", "mobile": "13900000002", "joined_on": "2024-01-01"}, sc.actor("lost_hq"))


def test_bulk_operations_need_the_bulk_edit_right(sc):
    desk = sc.actor("desk_sh")
    ids = sorted(sc.expected_member_ids("desk_sh"))
    with pytest.raises(PermissionDenied):
        sc.services.records.bulk_update(MEMBER, ids, {"notes": "批量"}, desk)
    assert sc.services.records.bulk_update(MEMBER, sorted(sc.expected_member_ids("mgr_east"))[:2], {"notes": "批量"}, sc.actor("mgr_east")) == 2


def test_rule_changes_reach_the_cache_through_the_stamp(sc):
    services = sc.services
    member = services.store.catalog().entity(MEMBER)
    desk = sc.actor("desk_sh")
    assert "notes" in services.policy.readable_fields(desk, member)
    # another worker's admin changes the rule: a separate PermissionAdmin and cache on the same database
    other = PermissionAdmin(services.engine, type(services.policy.rules)(services.engine), services.store.catalog)
    other.set_field_rules(sc.roles["FrontDesk"], member, {"notes": ("hidden", False)}, actor_id=None)
    assert "notes" not in services.policy.readable_fields(desk, member)
    with services.engine.connect() as conn:
        events = conn.execute(select(pt.audit).where(pt.audit.c.category == "permission", pt.audit.c.action == "set_fields")).mappings().all()
    assert events[-1]["changes"]["notes"] == [["editable", False], ["hidden", False]]


def test_bad_rules_are_refused(sc):
    services = sc.services
    member = services.store.catalog().entity(MEMBER)
    admin = PermissionAdmin(services.engine, services.policy.rules, services.store.catalog)
    with pytest.raises(ValidationFailed) as info:
        admin.set_field_rules(sc.roles["Sales"], member, {"nope": ("hidden", False), "name": ("secret", False)}, actor_id=None)
    assert set(info.value.field_errors) == {"nope", "name"}
    with pytest.raises(ValidationFailed):
        admin.set_row_scope(sc.roles["Sales"], member, "everyone", actor_id=None)
    with pytest.raises(ValidationFailed) as info:
        admin.set_row_scope(sc.roles["Sales"], member, "custom", {"field": "nope", "op": "eq", "value": 1}, actor_id=None)
    assert "nope" in str(info.value.field_errors["filter"])
    with pytest.raises(ValidationFailed):
        admin.set_actions(sc.roles["Sales"], member, {"read", "fly"}, actor_id=None)
    # nothing changed: Sales still sees only its own rows
    assert {r["id"] for r in services.queries.list(MEMBER, sc.actor("sales_bj"), limit=200).rows} == sc.expected_member_ids("sales_bj")


def test_custom_scope_with_variables(sc):
    services = sc.services
    member = services.store.catalog().entity(MEMBER)
    admin = PermissionAdmin(services.engine, services.policy.rules, services.store.catalog)
    admin.set_row_scope(sc.roles["Sales"], member, "custom", {"or": [{"field": "owner_id", "op": "eq", "value": "$user_id"},
                                                                     {"field": "status", "op": "eq", "value": "lost"}]}, actor_id=None)
    uid = sc.users["sales_bj"]
    expected = {m for m, v in sc.members.items() if v["owner"] == uid or v["status"] == "lost"}
    assert {r["id"] for r in services.queries.list(MEMBER, sc.actor("sales_bj"), limit=200).rows} == expected


def test_policy_costs_one_statement_per_request(sc, app):
    from conftest import login
    from policy_support import PASSWORD

    client = app.test_client()
    login(client, "desk_sh", PASSWORD)
    client.get("/e/membership.member/")  # warm caches
    seen = []

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    engine = sc.services.engine
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        resp = client.get("/api/v1/records/membership.member?limit=50")
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    assert resp.status_code == 200 and {i["id"] for i in resp.get_json()["items"]} == sc.expected_member_ids("desk_sh")
    policy_statements = [s for s in seen if "crmkit_policy_stamp" in s or "crmkit_field_rule" in s or "crmkit_row_scope" in s]
    assert len(policy_statements) == 1, policy_statements
    # The actor's grants and the rule stamp are one and the same statement: authorization costs one statement.
    authorization = [s for s in seen if "ab_user_role" in s or "crmkit_policy_stamp" in s or "ab_permission_view_role" in s]
    assert len(authorization) == 1, authorization
    assert "crmkit_user_org" in authorization[0] or "ab_user_role" in authorization[0]
    # ... which also carries the metadata stamp: the request's catalog is pinned without a stamp query of its own.
    assert [s for s in seen if "crmkit_meta_stamp" in s] == authorization
