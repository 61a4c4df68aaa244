"""The generated permission matrix: every user (role mix) × entity × surface, on a 3-level org tree.

Each cell is checked against an expectation computed independently from the scenario
description in ``policy_support`` (plain Python over the tree), not from the policy code.
Surfaces: web list, web detail, web edit form, API list, API get, CSV export, search and
autocomplete (the picker's options endpoint and the API search), and the audit timeline.
"""
from __future__ import annotations

import csv
import io
import random
import re

import pytest

from crmkit.runtime.actor import Actor

from conftest import login
from policy_support import PASSWORD, USERS, build_scenario, shared_scenario_fixture

MEMBER, LEVEL = "membership.member", "membership.level"


@pytest.fixture
def sc(app):
    return build_scenario(app)


shared_sc = shared_scenario_fixture()


def member_fields(app):
    return [f.name for f in app.extensions["crmkit"].store.catalog().entity(MEMBER).fields]


def names_in(html: str) -> set[str]:
    return set(re.findall(r"会员\d{3}", html))


def test_every_user_entity_and_surface(shared_sc):
    sc, app = shared_sc, shared_sc.app
    fields = member_fields(app)
    catalog = app.extensions["crmkit"].store.catalog()
    member_def = catalog.entity(MEMBER)
    label_of = {f.name: f.label.zh for f in member_def.fields}
    name_of = {mid: f"会员{m['n']:03d}" for mid, m in sc.members.items()}
    checked = 0
    for username in USERS:
        client = app.test_client()
        login(client, username, PASSWORD)
        actions = sc.member_actions(username)
        visible = sc.expected_member_ids(username)
        hidden = sc.expected_hidden(username, fields)
        writable = sc.expected_writable(username, fields)
        can_read = "read" in actions
        who = f"{username}"

        # --- member: web list --------------------------------------------------------------
        resp = client.get("/e/membership.member/?per_page=200")
        if not can_read:
            assert resp.status_code == 403, who
        else:
            html = resp.get_data(as_text=True)
            assert resp.status_code == 200, who
            assert names_in(html) == {name_of[m] for m in visible}, who
            for m in sc.members.values():
                assert f"138{m['n']:08d}" not in html, who  # masked in the list
        checked += 1

        # --- member: API list (+ counts) -----------------------------------------------------
        resp = client.get("/api/v1/records/membership.member?limit=200&count=exact")
        if not can_read:
            assert resp.status_code == 403, who
        else:
            body = resp.get_json()
            assert {i["id"] for i in body["items"]} == visible and body["total"] == len(visible), who
            for item in body["items"]:
                assert not hidden & set(item) and not hidden & set(item["_labels"]), who
                assert set(fields) - hidden - {"card_no"} <= set(item) | {"tags", "level"} | set(fields), who
                assert item["mobile"] is None or "****" in item["mobile"], who
        checked += 1

        # --- member: detail, form, API get, audit timeline: every record --------------------------
        for mid in sc.members:
            detail = client.get(f"/e/membership.member/{mid}")
            api = client.get(f"/api/v1/records/membership.member/{mid}")
            history = client.get(f"/api/v1/records/membership.member/{mid}/history")
            edit = client.get(f"/e/membership.member/{mid}/edit")
            if not can_read:
                assert detail.status_code == api.status_code == history.status_code == 403, who
                continue
            if mid not in visible:
                assert detail.status_code == api.status_code == history.status_code == 404, (who, mid)
                assert edit.status_code in (403, 404) and name_of[mid] not in edit.get_data(as_text=True), (who, mid)
                continue
            html = detail.get_data(as_text=True)
            assert detail.status_code == 200 and name_of[mid] in html, (who, mid)
            for h in hidden:
                assert f">{label_of[h]}<" not in html, (who, h)
            item = api.get_json()
            assert item["id"] == mid and not hidden & set(item), (who, mid)
            assert item["mobile"] == f"138****{sc.members[mid]['n']:08d}"[-11:] or "****" in item["mobile"], (who, mid)
            entries = history.get_json()["items"]
            assert entries and all(not hidden & set(e["changes"]) for e in entries), (who, mid)
            assert all("****" in str(e["changes"].get("mobile", ["****"])) for e in entries), (who, mid)
            if "update" in actions:
                form = edit.get_data(as_text=True)
                assert edit.status_code == 200, (who, mid)
                for h in hidden:
                    assert f'name="{h}"' not in form, (who, h)
                editable_inputs = set(re.findall(r'<(?:input|select|textarea)[^>]*\bname="([a-z_]+)"', form)) & set(fields)
                assert editable_inputs <= writable, (who, editable_inputs - writable)
            else:
                assert edit.status_code == 403, (who, mid)
            checked += 4

        # --- member: export -----------------------------------------------------------------------
        resp = client.get("/e/membership.member/export.csv")
        if can_read and "export" in actions:
            rows = list(csv.reader(io.StringIO(resp.get_data(as_text=True)[1:])))
            assert len(rows) - 1 == len(visible), who
            header = rows[0]
            assert not {label_of[h] for h in hidden} & set(header), who
            assert names_in(resp.get_data(as_text=True)) == {name_of[m] for m in visible}, who
        else:
            assert resp.status_code == 403, who
        checked += 1

        # --- member: search and autocomplete ---------------------------------------------------------
        resp = client.get("/e/membership.member/options?q=会员")
        api_search = client.get("/api/v1/records/membership.member?search=会员&limit=200")
        if not can_read:
            assert resp.status_code == 403 and api_search.status_code == 403, who
        else:
            assert names_in(resp.get_data(as_text=True)) == {name_of[m] for m in visible}, who
            assert {i["id"] for i in api_search.get_json()["items"]} == visible, who
        checked += 2

        # --- level: read-only entity with no row scope --------------------------------------------------
        level_ok = "read" in sc.level_actions(username)
        resp = client.get("/api/v1/records/membership.level?limit=200")
        assert resp.status_code == (200 if level_ok else 403), who
        if level_ok:
            assert {i["id"] for i in resp.get_json()["items"]} == set(sc.levels), who
        # the level link label on members shows only when the user may read levels
        if can_read and visible:
            item = client.get(f"/api/v1/records/membership.member/{next(iter(visible))}").get_json()
            label = item["_labels"].get("level", "")
            assert label.startswith("等级") if level_ok else label == f"#{item['level']}", (who, label)
        checked += 1
    assert checked >= 150  # cells actually compared


def test_random_id_guesses_read_nothing_out_of_scope(shared_sc):
    sc, app = shared_sc, shared_sc.app
    """1,000 random record-id guesses by a scoped user: every hit is in scope, every miss is a 404."""
    client = app.test_client()
    login(client, "sales_bj", PASSWORD)
    visible = sc.expected_member_ids("sales_bj")
    rng = random.Random(5)
    top = max(sc.members) + 20
    guesses = [rng.randint(1, top) for _ in range(900)] + [rng.randint(1, 2**40) for _ in range(100)]
    leaked = []
    for rid in guesses:
        resp = client.get(f"/api/v1/records/membership.member/{rid}")
        if rid in visible:
            assert resp.status_code == 200 and resp.get_json()["id"] == rid
        else:
            if resp.status_code != 404:
                leaked.append(rid)
    assert leaked == []
    # and the service answers the same way without HTTP
    q = app.extensions["crmkit"].queries
    actor = sc.actor("sales_bj")
    from crmkit.runtime.errors import RecordNotFound
    for rid in sorted(set(sc.members) - visible):
        with pytest.raises(RecordNotFound):
            q.get(MEMBER, rid, actor)


def test_mass_assignment_on_every_write_endpoint(sc, app):
    """Hidden and read-only fields are refused (API 422) or ignored (web forms send only writable inputs)."""
    from conftest import csrf_from

    services = app.extensions["crmkit"]
    admin = Actor(id=None, username="system", is_admin=True)
    mid = next(iter(sc.expected_member_ids("desk_sh")))
    before = services.queries.get(MEMBER, mid, admin)
    client = app.test_client()
    login(client, "desk_sh", PASSWORD)
    token = csrf_from(client.get("/home").get_data(as_text=True))
    h = {"X-CSRFToken": token}
    # API create with a hidden field
    resp = client.post("/api/v1/records/membership.member", json={"name": "新", "mobile": "13911112222", "joined_on": "2024-01-01",
                                                                 "id_number": "110101199001011237"}, headers=h)
    assert resp.status_code == 422 and "id_number" in resp.get_json()["details"]["fields"]
    # API update with a read-only field and with a hidden one
    for field, value in (("total_spent", "1"), ("id_number", "110101199001011237")):
        resp = client.patch(f"/api/v1/records/membership.member/{mid}", json={"row_version": before["row_version"], field: value}, headers=h)
        assert resp.status_code == 422 and field in resp.get_json()["details"]["fields"], resp.get_json()
    # API bulk update (FrontDesk has no bulk_edit) and a manager's bulk update of a read-only-for-nobody hidden field
    resp = client.post("/api/v1/records/membership.member/bulk-update", json={"ids": [mid], "values": {"notes": "x"}}, headers=h)
    assert resp.status_code == 403
    # web form: a forged hidden/read-only input is not applied
    page = client.get(f"/e/membership.member/{mid}/edit").get_data(as_text=True)
    resp = client.post(f"/e/membership.member/{mid}/edit", data={"csrf_token": csrf_from(page), "row_version": before["row_version"],
                                                                 "name": before["name"], "mobile": before["mobile"] and "", "joined_on": "2024-01-02",
                                                                 "total_spent": "88888", "id_number": "110101199001011237", "owner_id": "1"})
    after = services.queries.get(MEMBER, mid, admin)
    assert after["total_spent"] == before["total_spent"] and after.get("id_number") == before.get("id_number")
    assert after["owner_id"] == before["owner_id"]
    # API: system fields are never taken from input
    resp = client.patch(f"/api/v1/records/membership.member/{mid}", json={"row_version": after["row_version"], "owner_id": 1,
                                                                          "org_unit_id": sc.units["BJ"], "notes": "ok"}, headers=h)
    assert resp.status_code == 200
    final = services.queries.get(MEMBER, mid, admin)
    assert (final["owner_id"], final["org_unit_id"], final["notes"]) == (before["owner_id"], before["org_unit_id"], "ok")
