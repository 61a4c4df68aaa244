"""The Auditor role: reads every membership entity, sees the personal fields of members and applications only masked on
every read path (query service, record page, history, API, CSV export, reports), cannot filter, group or unmask them,
and every write — record service, form, API, named actions — is refused."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crmkit.apps.membership.roles import install_roles
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import BadQuery, PermissionDenied
from crmkit.runtime.permissions.admin import PermissionAdmin
from crmkit.runtime.permissions.tables import field_rule
from crmkit.runtime.query.aggregate import GroupSpec, MeasureSpec
from crmkit.runtime.storage import platform_tables as pt

from conftest import csrf_from, login
from membership_join_support import people
from org_support import PASSWORD
from workflow_support import APPLICATIONS, applicant

MEMBERS = "membership.member"
SECRET = {"mobile": "13912345678", "id_number": "110101199003078515", "email": "wangfang@example.com", "address": "上海市静安区南京西路 1 号"}
PERSONAL = ("mobile", "id_number", "email", "birthday", "address")
# What the Auditor reads instead (the birthday is derived from the ID number: 1990-03-07).
MASKED = {"mobile": "139****5678", "id_number": "110101********8515", "email": "w***@example.com", "birthday": "**********",
          "address": "*" * len(SECRET["address"])}
APPLICANT = {"mobile": "13700137000", "id_number": "110101199105056659", "birthday": "1991-05-05"}
APPLICANT_MASKED = {"mobile": "137****7000", "id_number": "110101********6659", "birthday": "**********"}


@pytest.fixture
def audit(app, services):
    team = people(app, services)
    mid = services.records.create(MEMBERS, {"name": "王芳", "joined_on": "2025-03-01", "notes": "VIP 客户", **SECRET}, SYSTEM)
    client = app.test_client()
    login(client, "auditor", PASSWORD)
    return team["auditor"], mid, client


def _no_secret(text: str) -> None:
    for value in (*SECRET.values(), *APPLICANT.values()):
        assert value not in text
    assert "1990-03-07" not in text and "19900307" not in text  # the birthday derived from the ID number


def test_auditor_reads_every_membership_entity_with_personal_fields_masked(services, audit):
    auditor, mid, _ = audit
    for ent in ("member", "application", "order", "coupon", "coupon_template", "level_change", "lifecycle_setting", "points_plan", "reward_item"):
        assert services.policy.allows(auditor, services.store.catalog().entity(f"membership.{ent}"), "read"), ent
    row = services.queries.get(MEMBERS, mid, auditor)
    assert row["name"] == "王芳" and "lifecycle_stage" in row and row["notes"] == "VIP 客户"
    assert {f: row[f] for f in PERSONAL} == MASKED
    listed = services.queries.list(MEMBERS, auditor, count="exact")
    assert listed.total == 1 and {f: listed.rows[0][f] for f in PERSONAL} == MASKED
    assert services.queries.get(MEMBERS, mid, SYSTEM)["mobile"] == SECRET["mobile"]  # the field itself is not masked
    rid = services.records.create(APPLICATIONS, applicant(name="赵敏", **APPLICANT), SYSTEM)
    app_row = services.queries.get(APPLICATIONS, rid, auditor)
    assert app_row["name"] == "赵敏" and {f: app_row[f] for f in APPLICANT_MASKED} == APPLICANT_MASKED
    assert {f: services.queries.list(APPLICATIONS, auditor).rows[0][f] for f in APPLICANT_MASKED} == APPLICANT_MASKED
    # the audit timeline masks them too: the create entries carry the real values
    member_history = services.queries.history(MEMBERS, mid, auditor)
    assert member_history[-1]["changes"]["mobile"] == [None, MASKED["mobile"]]
    assert services.queries.history(APPLICATIONS, rid, auditor)[-1]["changes"]["id_number"] == [None, APPLICANT_MASKED["id_number"]]
    _no_secret(str(member_history) + str(services.queries.history(APPLICATIONS, rid, auditor)))


def test_no_personal_value_on_the_record_page_api_export_or_reports(services, audit):
    auditor, mid, client = audit
    rid = services.records.create(APPLICATIONS, applicant(name="赵敏", **APPLICANT), SYSTEM)
    page = client.get(f"/e/{MEMBERS}/{mid}")
    assert page.status_code == 200 and "王芳" in page.get_data(as_text=True) and MASKED["mobile"] in page.get_data(as_text=True)
    _no_secret(page.get_data(as_text=True))  # the history on the page included
    assert "/unmask/" not in page.get_data(as_text=True)
    listing = client.get(f"/e/{MEMBERS}/")
    assert "王芳" in listing.get_data(as_text=True) and MASKED["mobile"] in listing.get_data(as_text=True)
    _no_secret(listing.get_data(as_text=True))
    application_page = client.get(f"/e/{APPLICATIONS}/{rid}")
    assert application_page.status_code == 200 and APPLICANT_MASKED["id_number"] in application_page.get_data(as_text=True)
    _no_secret(application_page.get_data(as_text=True))
    _no_secret(client.get(f"/e/{APPLICATIONS}/").get_data(as_text=True))
    api = client.get(f"/api/v1/records/{MEMBERS}/{mid}")
    assert api.status_code == 200 and api.get_json()["name"] == "王芳" and {f: api.get_json()[f] for f in PERSONAL} == MASKED
    _no_secret(api.get_data(as_text=True))
    _no_secret(client.get(f"/api/v1/records/{MEMBERS}").get_data(as_text=True))
    _no_secret(client.get(f"/api/v1/records/{MEMBERS}/{mid}/history").get_data(as_text=True))
    api_app = client.get(f"/api/v1/records/{APPLICATIONS}/{rid}")
    assert {f: api_app.get_json()[f] for f in APPLICANT_MASKED} == APPLICANT_MASKED
    _no_secret(client.get(f"/api/v1/records/{APPLICATIONS}").get_data(as_text=True))
    _no_secret(client.get(f"/api/v1/records/{APPLICATIONS}/{rid}/history").get_data(as_text=True))
    export = client.get(f"/e/{MEMBERS}/export.csv")
    assert export.status_code == 200 and "王芳" in export.get_data(as_text=True) and MASKED["mobile"] in export.get_data(as_text=True)
    _no_secret(export.get_data(as_text=True))
    with pytest.raises(BadQuery):  # a masked field cannot be grouped, counted, filtered or sorted either
        services.queries.aggregate(MEMBERS, auditor, groups=[GroupSpec("mobile", None)], measures=[MeasureSpec("n", "count", None)])
    with pytest.raises(BadQuery):
        services.queries.list(APPLICATIONS, auditor, filter={"field": "birthday", "op": "gte", "value": "1991-01-01"})
    assert client.get(f"/api/v1/records/{MEMBERS}?sort=id_number").status_code == 400
    search = client.get(f"/e/{MEMBERS}/?q={SECRET['mobile'][:7]}")  # nor found by part of it
    assert "王芳" not in search.get_data(as_text=True).split("<tbody", 1)[-1]
    csrf = {"X-CSRFToken": csrf_from(client.get("/home").get_data(as_text=True))}
    assert client.post(f"/api/v1/records/{MEMBERS}/{mid}/unmask", json={"field": "mobile"}, headers=csrf).status_code == 403
    assert client.get(f"/e/{MEMBERS}/calendar").status_code == 200  # placed by a date they may filter on, not the birthday


def test_installing_again_moves_the_auditor_from_hidden_to_masked_and_then_changes_nothing(services, audit):
    auditor, mid, _ = audit
    catalog = services.store.catalog()
    perms = PermissionAdmin(services.engine, services.policy.rules, services.store.catalog)
    role = perms.ensure_role("Auditor")
    # the rules an install before the masked level wrote
    perms.set_field_rules(role, catalog.entity(MEMBERS), {f: ("hidden", False) for f in PERSONAL}, actor_id=None)
    assert not set(PERSONAL) & set(services.queries.get(MEMBERS, mid, auditor))

    def auditor_rules() -> dict:
        with services.engine.connect() as conn:
            return {(r.entity, r.field): r.access for r in conn.execute(select(field_rule).where(field_rule.c.role_id == role))}

    def permission_events() -> int:
        with services.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(pt.audit).where(pt.audit.c.category == "permission")).scalar_one()

    install_roles(services, SYSTEM)
    assert auditor_rules() == {**{(MEMBERS, f): "masked" for f in PERSONAL}, **{(APPLICATIONS, f): "masked" for f in ("mobile", "id_number", "birthday")}}
    assert {f: services.queries.get(MEMBERS, mid, auditor)[f] for f in PERSONAL} == MASKED
    events = permission_events()
    install_roles(services, SYSTEM)
    assert permission_events() == events


def test_every_write_is_refused(services, audit):
    auditor, mid, client = audit
    row = services.queries.get(MEMBERS, mid, SYSTEM)
    with pytest.raises(PermissionDenied):
        services.records.update(MEMBERS, mid, {"notes": "审计改动"}, auditor, expected_version=row["row_version"])
    with pytest.raises(PermissionDenied):
        services.records.create(MEMBERS, {"name": "新会员", "mobile": "13900000001", "joined_on": "2026-01-01"}, auditor)
    with pytest.raises(PermissionDenied):
        services.records.delete(MEMBERS, mid, auditor, expected_version=row["row_version"])
    with pytest.raises(PermissionDenied):
        services.records.create("membership.lifecycle_setting", {"name": "审计参数", "new_days": 1, "dormant_days": 2, "churn_days": 3}, auditor)
    token = csrf_from(client.get("/home").get_data(as_text=True))
    api = client.patch(f"/api/v1/records/{MEMBERS}/{mid}", json={"row_version": row["row_version"], "notes": "改"}, headers={"X-CSRFToken": token})
    assert api.status_code == 403
    form = client.post(f"/e/{MEMBERS}/{mid}/edit", data={"csrf_token": token, "row_version": row["row_version"], "notes": "改"})
    assert form.status_code in (403, 404)
    from crmkit.runtime.packages import run_action

    with pytest.raises(PermissionDenied):
        run_action(services, "membership", "levels.evaluate", auditor, {"member": mid})
    with pytest.raises(PermissionDenied):
        run_action(services, "membership", "lifecycle.coupon", auditor, {"member": mid, "coupon": "welcome", "occurrence": "join"})
    after = services.queries.get(MEMBERS, mid, SYSTEM)
    assert after["row_version"] == row["row_version"] and after["notes"] == "VIP 客户"
    assert services.queries.list("membership.lifecycle_setting", SYSTEM, count="exact").total == 0


def test_pages_offer_no_edit_or_bulk_actions_to_a_read_only_role(app, services, audit):
    """Jinja reads ``can.update`` as the dict's ``update`` method (always true), so every reader was offered Edit on
    the list and the record page and the bulk bar; the templates now ask for the permission itself."""
    _, mid, client = audit
    edit = f"/e/{MEMBERS}/{mid}/edit"
    listing, detail = client.get(f"/e/{MEMBERS}/").get_data(as_text=True), client.get(f"/e/{MEMBERS}/{mid}").get_data(as_text=True)
    assert "王芳" in listing and "王芳" in detail
    assert edit not in listing and edit not in detail
    assert 'class="bulk-edit"' not in listing
    admin = app.test_client()
    login(admin)
    assert edit in admin.get(f"/e/{MEMBERS}/").get_data(as_text=True) and edit in admin.get(f"/e/{MEMBERS}/{mid}").get_data(as_text=True)
