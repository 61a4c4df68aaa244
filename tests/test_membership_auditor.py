"""The Auditor role: reads every membership entity, sees no personal field on any read path (query service, record
page, API, CSV export, reports), and every write — record service, form, API, named actions — is refused."""
from __future__ import annotations

import pytest

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import BadQuery, PermissionDenied
from crmkit.runtime.query.aggregate import GroupSpec, MeasureSpec

from conftest import csrf_from, login
from membership_join_support import people
from org_support import PASSWORD

MEMBERS = "membership.member"
SECRET = {"mobile": "13912345678", "id_number": "110101199003078515", "email": "wangfang@example.com", "address": "上海市静安区南京西路 1 号"}
PERSONAL = ("mobile", "id_number", "email", "birthday", "address")


@pytest.fixture
def audit(app, services):
    team = people(app, services)
    mid = services.records.create(MEMBERS, {"name": "王芳", "joined_on": "2025-03-01", "notes": "VIP 客户", **SECRET}, SYSTEM)
    client = app.test_client()
    login(client, "auditor", PASSWORD)
    return team["auditor"], mid, client


def _no_secret(text: str) -> None:
    for value in SECRET.values():
        assert value not in text
    assert "1990-03-07" not in text and "19900307" not in text  # the birthday derived from the ID number


def test_auditor_reads_every_membership_entity_and_the_computed_fields(services, audit):
    auditor, mid, _ = audit
    for ent in ("member", "application", "order", "coupon", "coupon_template", "level_change", "lifecycle_setting", "points_plan", "reward_item"):
        assert services.policy.allows(auditor, services.store.catalog().entity(f"membership.{ent}"), "read"), ent
    row = services.queries.get(MEMBERS, mid, auditor)
    assert row["name"] == "王芳" and "lifecycle_stage" in row and row["notes"] == "VIP 客户"
    assert not set(PERSONAL) & set(row)
    listed = services.queries.list(MEMBERS, auditor, count="exact")
    assert listed.total == 1 and not set(PERSONAL) & set(listed.rows[0])


def test_no_personal_value_on_the_record_page_api_export_or_reports(services, audit):
    auditor, mid, client = audit
    page = client.get(f"/e/{MEMBERS}/{mid}")
    assert page.status_code == 200 and "王芳" in page.get_data(as_text=True)
    _no_secret(page.get_data(as_text=True))
    listing = client.get(f"/e/{MEMBERS}/")
    assert "王芳" in listing.get_data(as_text=True)
    _no_secret(listing.get_data(as_text=True))
    api = client.get(f"/api/v1/records/{MEMBERS}/{mid}")
    assert api.status_code == 200 and api.get_json()["name"] == "王芳" and not set(PERSONAL) & set(api.get_json())
    _no_secret(api.get_data(as_text=True))
    _no_secret(client.get(f"/api/v1/records/{MEMBERS}").get_data(as_text=True))
    export = client.get(f"/e/{MEMBERS}/export.csv")
    assert export.status_code == 200 and "王芳" in export.get_data(as_text=True)
    _no_secret(export.get_data(as_text=True))
    with pytest.raises(BadQuery):  # a hidden field cannot be grouped or counted either
        services.queries.aggregate(MEMBERS, auditor, groups=[GroupSpec("mobile", None)], measures=[MeasureSpec("n", "count", None)])
    search = client.get(f"/e/{MEMBERS}/?q={SECRET['mobile']}")  # nor found by searching for it
    assert "王芳" not in search.get_data(as_text=True).split("<tbody", 1)[-1]


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
