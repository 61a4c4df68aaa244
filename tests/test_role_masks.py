"""A role's ``masked`` field access: its holders read the value masked on every surface (query service, record page,
list, edit form, API, export, history, link labels, pickers), cannot filter, sort, group, unmask or write it; another
role's read-only or editable access wins; administrators and system reads see real values."""
from __future__ import annotations

import csv
import decimal
import io
import json

import pytest
from sqlalchemy import func, select

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import BadQuery, PermissionDenied, ValidationFailed
from crmkit.runtime.permissions.admin import PermissionAdmin
from crmkit.runtime.permissions.explain import explain
from crmkit.runtime.permissions.masking import mask_value
from crmkit.runtime.permissions.rules import bump_stamp
from crmkit.runtime.permissions.tables import field_rule
from crmkit.runtime.db import write_transaction
from crmkit.runtime.query.aggregate import GroupSpec, MeasureSpec
from crmkit.runtime.storage import platform_tables as pt

from conftest import csrf_from, login
from membership_join_support import people
from org_support import PASSWORD, add_user
from policy_support import mask_member_fields
from workflow_support import APPLICATIONS, actor_of, applicant

MEMBERS, ORDERS = "membership.member", "membership.order"
SECRET = {"name": "王芳", "mobile": "13812345678", "id_number": "110101199003078515", "email": "wangfang@example.com",
          "birthday": "1990-03-07", "total_spent": "1234.50", "consent_sms": True}
MASKED = ("name", "mobile", "id_number", "email", "birthday", "total_spent", "consent_sms", "birth_month")
# Phone, email and ID number by their type; text and dates every character; money, yes/no and a number formula ****.
SHOWN = {"name": "**", "mobile": "138****5678", "id_number": "110101********8515", "email": "w***@example.com",
         "birthday": "**********", "total_spent": "****", "consent_sms": "****", "birth_month": "****"}
REAL_TEXT = ("王芳", "13812345678", "110101199003078515", "wangfang@example.com", "1990-03-07", "1234.50", "1,234.50")


@pytest.fixture
def masked(app, services):
    """Role "Masked Reader" reads MASKED fields masked (and may update and export members); "Mobile Clerk" reads the
    mobile read-only and hides the rest of MASKED. "masker" holds the first role, "both" holds the two."""
    catalog = services.store.catalog()
    member, order = catalog.entity(MEMBERS), catalog.entity(ORDERS)
    perms = PermissionAdmin(services.engine, services.policy.rules, services.store.catalog)
    reader = perms.ensure_role("Masked Reader")
    perms.set_actions(reader, member, ("read", "update", "export"), actor_id=None)
    perms.set_actions(reader, order, ("read",), actor_id=None)
    perms.set_field_rules(reader, member, {f: ("masked", False) for f in MASKED}, actor_id=None)
    clerk = perms.ensure_role("Mobile Clerk")
    perms.set_actions(clerk, member, ("read",), actor_id=None)
    perms.set_field_rules(clerk, member, {f: ("read_only" if f == "mobile" else "hidden", False) for f in MASKED}, actor_id=None)
    ids = {"masker": add_user(app, "masker", ["Masked Reader"]), "both": add_user(app, "both", ["Masked Reader", "Mobile Clerk"])}
    mid = services.records.create(MEMBERS, {**SECRET, "joined_on": "2025-03-01", "notes": "VIP 客户"}, SYSTEM)
    oid = services.records.create(ORDERS, {"member": mid, "amount": "100", "ordered_at": "2026-03-01T10:00:00+08:00"}, SYSTEM)
    return {"masker": actor_of(services, ids["masker"], "masker"), "both": actor_of(services, ids["both"], "both"), "member": mid,
            "order": oid, "ids": ids, "roles": {"reader": reader, "clerk": clerk}, "perms": perms}


def _no_secret(body: str) -> None:
    for value in REAL_TEXT:
        assert value not in body, value


def test_the_query_service_masks_for_the_masked_role_only(services, masked):
    q, mid = services.queries, masked["member"]
    row = q.get(MEMBERS, mid, masked["masker"])
    assert {f: row[f] for f in MASKED} == SHOWN
    assert row["notes"] == "VIP 客户" and row["joined_on"].isoformat() == "2025-03-01"  # unmasked fields stay real
    listed = q.list(MEMBERS, masked["masker"], count="exact")
    assert listed.total == 1 and {f: listed.rows[0][f] for f in MASKED} == SHOWN
    # best level wins per field: the clerk's read-only mobile is real, the fields the clerk hides stay masked
    both = q.get(MEMBERS, mid, masked["both"])
    assert both["mobile"] == "13812345678" and both["id_number"] == SHOWN["id_number"] and both["birthday"] == "**********"
    real = q.get(MEMBERS, mid, SYSTEM)  # system reads (automations, messaging) and admins: real values
    assert real["mobile"] == "13812345678" and real["total_spent"] == decimal.Decimal("1234.50") and real["consent_sms"] is True
    assert real["birthday"].isoformat() == "1990-03-07" and real["birth_month"] == 3
    # the member is the order's link title: masked in the order's labels and in the member picker
    order = q.get(ORDERS, masked["order"], masked["masker"])
    assert order["member"] == mid and order["_labels"]["member"] == "**"
    assert q.list(ORDERS, masked["masker"]).rows[0]["_labels"]["member"] == "**"
    assert q.options(MEMBERS, masked["masker"]) == [(mid, "**")]
    assert q.get(ORDERS, masked["order"], SYSTEM)["_labels"]["member"] == "王芳"
    # the record's history: the create entry's values masked, child of nothing real
    history = q.history(MEMBERS, mid, masked["masker"])
    created = history[-1]["changes"]
    assert created["mobile"] == [None, "138****5678"] and created["birthday"] == [None, "**********"]
    assert created["id_number"] == [None, SHOWN["id_number"]] and created["total_spent"] == [None, "****"]
    _no_secret(json.dumps(history, default=str, ensure_ascii=False))
    assert q.history(MEMBERS, mid, masked["both"])[-1]["changes"]["mobile"] == [None, "13812345678"]


def test_masked_fields_cannot_be_filtered_sorted_grouped_or_searched_by_fragment(services, masked):
    q, masker = services.queries, masked["masker"]
    member = services.store.catalog().entity(MEMBERS)
    comparable = set(services.policy.comparable_fields(masker, member))
    assert not comparable & set(MASKED) and "notes" in comparable
    assert "mobile" in services.policy.comparable_fields(masked["both"], member)
    with pytest.raises(BadQuery):
        q.list(MEMBERS, masker, filter={"field": "mobile", "op": "starts_with", "value": "138"})
    with pytest.raises(BadQuery):
        q.list(MEMBERS, masker, filter={"field": "birthday", "op": "lt", "value": "2000-01-01"})
    with pytest.raises(BadQuery):
        q.list(MEMBERS, masker, sort=["-total_spent"])
    with pytest.raises(BadQuery):
        q.check_filter(MEMBERS, masker, filter={"field": "email", "op": "contains", "value": "wang"})
    with pytest.raises(BadQuery):
        q.aggregate(MEMBERS, masker, groups=[GroupSpec("birthday", "month")], measures=[MeasureSpec("n", "count", None)])
    with pytest.raises(BadQuery):
        q.aggregate(MEMBERS, masker, measures=[MeasureSpec("sum", "sum", "total_spent")])
    assert q.list(MEMBERS, masker, search="138123").rows == []  # a fragment finds nothing (the exact value would)
    assert q.list(MEMBERS, masked["both"], filter={"field": "mobile", "op": "starts_with", "value": "138"}).rows


def test_a_masked_field_is_never_unmasked_or_written(services, masked):
    q, masker, mid = services.queries, masked["masker"], masked["member"]
    with pytest.raises(PermissionDenied):
        q.unmask(MEMBERS, mid, "mobile", masker)
    # on a field masked for everyone, a masked role cannot unmask even when the rule says so; a read-only one can
    mask_member_fields(services)
    member = services.store.catalog().entity(MEMBERS)
    masked["perms"].set_field_rules(masked["roles"]["reader"], member, {"mobile": ("masked", True)}, actor_id=None)
    masked["perms"].set_field_rules(masked["roles"]["clerk"], member, {"mobile": ("read_only", True)}, actor_id=None)
    assert "mobile" not in services.policy.unmaskable_fields(masker, member)
    with pytest.raises(PermissionDenied):
        q.unmask(MEMBERS, mid, "mobile", masker)
    assert q.unmask(MEMBERS, mid, "mobile", masked["both"]) == "13812345678"
    assert q.get(MEMBERS, mid, masked["both"])["mobile"] == "138****5678"  # masked for every reader until revealed
    # writes: never writable, and sending the real value back does not pass as "unchanged" (no probing)
    assert not set(services.policy.writable_fields(masker, member)) & set(MASKED)
    version = q.get(MEMBERS, mid, SYSTEM)["row_version"]
    for attempt in ({"mobile": "13900000000"}, {"mobile": "13812345678"}, {"birthday": "1990-03-07"}, {"total_spent": "1234.50"}):
        with pytest.raises(ValidationFailed) as info:
            services.records.update(MEMBERS, mid, attempt, masker, expected_version=version)
        assert set(info.value.field_errors) == set(attempt)
    # the record as the masker read it, sent back with one real change, saves and leaves the masked values alone
    seen = q.get(MEMBERS, mid, masker)
    services.records.update(MEMBERS, mid, {**{f: seen[f] for f in ("mobile", "id_number", "birthday", "email")}, "notes": "复核"},
                            masker, expected_version=version)
    after = q.get(MEMBERS, mid, SYSTEM)
    assert after["notes"] == "复核" and after["id_number"] == "110101********8515"
    assert q.unmask(MEMBERS, mid, "mobile", masked["both"]) == "13812345678" and after["birthday"].isoformat() == "1990-03-07"


def test_pages_api_export_and_history_show_masked_values(app, services, masked):
    mid, oid = masked["member"], masked["order"]
    client = app.test_client()
    login(client, "masker", PASSWORD)
    detail = client.get(f"/e/{MEMBERS}/{mid}")
    body = detail.get_data(as_text=True)
    assert detail.status_code == 200 and "138****5678" in body and "110101********8515" in body and "w***@example.com" in body
    assert "**********" in body and "VIP 客户" in body
    _no_secret(body)  # the history timeline on the page included
    assert "/unmask/" not in body
    listing = client.get(f"/e/{MEMBERS}/")
    assert listing.status_code == 200 and "138****5678" in listing.get_data(as_text=True)
    _no_secret(listing.get_data(as_text=True))
    edit = client.get(f"/e/{MEMBERS}/{mid}/edit")
    assert edit.status_code == 200 and "138****5678" in edit.get_data(as_text=True)
    _no_secret(edit.get_data(as_text=True))
    refused = client.get(f"/e/{MEMBERS}/?sort=mobile")
    assert refused.status_code == 422 and "mobile" in refused.get_data(as_text=True)  # the list page shows the refusal
    calendar = client.get(f"/e/{MEMBERS}/calendar")  # placed by a date the masker may filter on, never the birthday
    assert calendar.status_code == 200 and 'value="birthday"' not in calendar.get_data(as_text=True)
    orders = client.get(f"/e/{ORDERS}/")
    assert orders.status_code == 200 and "王芳" not in orders.get_data(as_text=True)

    one = client.get(f"/api/v1/records/{MEMBERS}/{mid}")
    assert one.status_code == 200 and {f: one.get_json()[f] for f in MASKED} == SHOWN
    many = client.get(f"/api/v1/records/{MEMBERS}")
    assert many.status_code == 200 and {f: many.get_json()["items"][0][f] for f in MASKED} == SHOWN
    history = client.get(f"/api/v1/records/{MEMBERS}/{mid}/history")
    assert history.status_code == 200 and "138****5678" in history.get_data(as_text=True)
    assert client.get(f"/api/v1/records/{ORDERS}/{oid}").get_json()["_labels"]["member"] == "**"
    for resp in (one, many, history, client.get(f"/api/v1/records/{ORDERS}")):
        _no_secret(resp.get_data(as_text=True))
    assert client.get(f"/api/v1/records/{MEMBERS}?sort=birthday").status_code == 400
    unmask = client.post(f"/api/v1/records/{MEMBERS}/{mid}/unmask", json={"field": "mobile"},
                         headers={"X-CSRFToken": csrf_from(client.get("/home").get_data(as_text=True))})
    assert unmask.status_code == 403 and "13812345678" not in unmask.get_data(as_text=True)

    export = client.get(f"/e/{MEMBERS}/export.csv")
    assert export.status_code == 200
    rows = list(csv.reader(io.StringIO(export.get_data(as_text=True).lstrip("\ufeff"))))
    record = dict(zip(rows[0], rows[1]))
    assert record["手机号"] == "138****5678" and record["姓名"] == "**" and record["累计消费"] == "****"
    _no_secret(export.get_data(as_text=True))


def test_an_admin_and_a_read_only_role_see_real_values(app, client, masked):
    mid = masked["member"]
    body = client.get(f"/e/{MEMBERS}/{mid}").get_data(as_text=True)  # the admin
    assert "13812345678" in body and "110101199003078515" in body and "1990-03-07" in body
    both = app.test_client()
    login(both, "both", PASSWORD)
    got = both.get(f"/api/v1/records/{MEMBERS}/{mid}").get_json()
    assert got["mobile"] == "13812345678" and got["id_number"] == SHOWN["id_number"] and "name" in got
    exported = both.get(f"/e/{MEMBERS}/export.csv")
    assert exported.status_code == 200 and "13812345678" in exported.get_data(as_text=True)


def _rules(services, role_id: int) -> dict:
    with services.engine.connect() as conn:
        return {r.field: (r.access, r.may_unmask) for r in conn.execute(select(field_rule).where(field_rule.c.role_id == role_id))}


def _permission_events(services) -> int:
    with services.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(pt.audit).where(pt.audit.c.category == "permission")).scalar_one()


def test_permission_admin_refuses_an_unknown_level_or_a_masked_link_and_stores_nothing(services, masked):
    perms, reader = masked["perms"], masked["roles"]["reader"]
    member = services.store.catalog().entity(MEMBERS)
    before, events = _rules(services, reader), _permission_events(services)
    with pytest.raises(ValidationFailed) as info:
        perms.set_field_rules(reader, member, {"notes": ("masked", False), "address": ("blurred", False)}, actor_id=None)
    message = info.value.field_errors["address"][0]
    assert "'blurred' is not a field access level" in message and "hidden, masked, read_only, editable" in message
    assert "不是字段权限级别" in message.zh and list(info.value.field_errors) == ["address"]
    with pytest.raises(ValidationFailed) as info:
        perms.set_field_rules(reader, member, {"level": ("masked", False)}, actor_id=None)
    assert "cannot be shown masked" in info.value.field_errors["level"][0] and "无法脱敏显示" in info.value.field_errors["level"][0].zh
    assert _rules(services, reader) == before and _permission_events(services) == events
    # a rule that reaches the table anyway (a field retyped to a link later, a hand edit) fails closed: hidden
    with write_transaction(services.engine) as conn:
        conn.execute(field_rule.insert(), [{"role_id": reader, "entity": MEMBERS, "field": "level", "access": "masked", "may_unmask": False},
                                           {"role_id": reader, "entity": MEMBERS, "field": "notes", "access": "blurred", "may_unmask": False}])
        bump_stamp(conn)
    readable = services.policy.readable_fields(masked["masker"], member)
    assert "level" not in readable and "notes" not in readable and "mobile" in readable


def test_reinstalling_masked_rules_writes_only_differences(services, masked):
    perms, reader = masked["perms"], masked["roles"]["reader"]
    member = services.store.catalog().entity(MEMBERS)
    events = _permission_events(services)
    assert perms.set_field_rules(reader, member, {f: ("masked", False) for f in MASKED}, actor_id=None) == 0
    assert _permission_events(services) == events
    assert perms.set_field_rules(reader, member, {"mobile": ("hidden", False)}, actor_id=None) == 1
    assert "mobile" not in services.policy.readable_fields(masked["masker"], member)


def test_the_drill_down_offers_masked_in_both_languages(app, client, services, masked):
    reader = masked["roles"]["reader"]
    url = f"/admin/permissions/{reader}/{MEMBERS}"
    html = client.get(url).get_data(as_text=True)
    assert 'name="access:mobile" value="masked" aria-label="手机号 · 脱敏只读" checked' in html
    assert 'name="access:level" value="masked"' not in html and 'name="access:level" value="hidden"' in html  # links cannot be masked
    client.get("/locale/en")
    assert 'aria-label="Mobile · Masked" checked' in client.get(url).get_data(as_text=True)
    member = services.store.catalog().entity(MEMBERS)
    current = _rules(services, reader)
    data = {"csrf_token": csrf_from(html), "scope": "all", "filter": ""}
    for f in member.fields:
        data[f"access:{f.name}"] = current.get(f.name, ("editable", False))[0]
    bad = client.post(url, data={**data, "access:notes": "blurred"})
    assert bad.status_code == 422 and "is not a field access level" in bad.get_data(as_text=True)
    assert _rules(services, reader) == current
    assert client.post(url, data={**data, "access:notes": "masked"}).status_code == 303
    assert _rules(services, reader)["notes"] == ("masked", False)
    assert services.queries.get(MEMBERS, masked["member"], masked["masker"])["notes"] == "*" * len("VIP 客户")


def test_the_explainer_reports_a_masked_field(app, client, services, masked):
    member = services.store.catalog().entity(MEMBERS)
    out = explain(services, masked["masker"], member, masked["member"], "mobile")
    assert [r.field_access for r in out.roles] == ["masked"]
    assert out.field_readable and out.field_masked and not out.field_writable and not out.field_unmaskable
    assert not explain(services, masked["both"], member, None, "mobile").field_masked
    page = client.get(f"/admin/permissions/explain?user={masked['ids']['masker']}&entity={MEMBERS}&field=mobile")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "脱敏只读" in html and "脱敏显示" in html


def test_mask_styles_for_role_masks():
    assert mask_value("every_character", "上海市静安区") == "******"
    assert mask_value("fixed", True) == "****" and mask_value("fixed", False) == "****" and mask_value("fixed", 7) == "****"
    import datetime as dt

    assert mask_value("every_character", dt.date(1990, 3, 7)) == "**********"


def test_workflow_inboxes_show_titles_as_the_actor_may_see_them(app, services):
    team = people(app, services)
    perms = PermissionAdmin(services.engine, services.policy.rules, services.store.catalog)
    applications = services.store.catalog().entity(APPLICATIONS)
    perms.set_field_rules(perms.ensure_role("Membership Manager"), applications, {"name": ("masked", False)}, actor_id=None)
    rid = services.records.create(APPLICATIONS, applicant(name="赵敏"), SYSTEM)
    assert {t["record_id"]: t["title"] for t in services.workflows.tasks(team["boss"])}[rid] == "**"
    assert {t["record_id"]: t["title"] for t in services.workflows.tasks(team["reviewer"])}[rid] == "赵敏"
    services.workflows.transition(APPLICATIONS, rid, "start_review", team["reviewer"])
    services.workflows.transition(APPLICATIONS, rid, "approve", team["reviewer"])
    assert [(a["record_id"], a["title"]) for a in services.workflows.approvals(team["boss"])] == [(rid, "**")]


def test_the_approvals_inbox_shows_entered_values_as_the_approver_may_see_them(app, services):
    """A request's entered values reach the approver's inbox (page and API) only as they may read them: masked for the
    Auditor, left out where hidden; deciding still applies the values as stored."""
    import datetime as dt

    from crmkit.runtime.workflow.tables import approval_request, approval_task

    team = people(app, services)
    catalog = services.store.catalog()
    perms = PermissionAdmin(services.engine, services.policy.rules, services.store.catalog)
    hider = perms.ensure_role("Mobile Hidden Approver")
    perms.set_actions(hider, catalog.entity(APPLICATIONS), ("read", "update"), actor_id=None)
    perms.set_field_rules(hider, catalog.entity(APPLICATIONS), {"mobile": ("hidden", False)}, actor_id=None)
    hidden_id = add_user(app, "hider", ["Mobile Hidden Approver"])
    rid = services.records.create(APPLICATIONS, applicant(name="赵敏", mobile="13700137000"), SYSTEM)
    entered = {"mobile": "13600136000", "name": "赵敏改"}
    now = dt.datetime.now(dt.timezone.utc)
    with write_transaction(services.engine) as conn:
        req = conn.execute(approval_request.insert().values(entity=APPLICATIONS, record_id=rid, workflow="join", transition="approve",
                                                            from_state="under_review", status="pending", mode="sequential", step=0,
                                                            field_values=entered, requested_by=team["front"].id, requested_at=now)).inserted_primary_key[0]
        for uid in (team["auditor"].id, hidden_id):
            conn.execute(approval_task.insert().values(request_id=req, step=0, assignee_id=uid, status="pending", created_at=now))

    def inbox(user_id, name):
        rows = services.workflows.approvals(actor_of(services, user_id, name))
        return [r["field_values"] for r in rows if r["request_id"] == req]

    assert inbox(team["auditor"].id, "auditor") == [{"mobile": "136****6000", "name": "赵敏改"}]
    assert inbox(hidden_id, "hider") == [{"name": "赵敏改"}]
    client = app.test_client()
    login(client, "auditor", PASSWORD)
    page = client.get("/workflow/approvals").get_data(as_text=True)
    api = client.get("/api/v1/approvals", headers={"X-CSRFToken": csrf_from(client.get("/home").get_data(as_text=True))})
    assert "136****6000" in page and "13600136000" not in page
    assert api.status_code == 200 and "13600136000" not in api.get_data(as_text=True)
    with services.engine.connect() as conn:  # what the decision applies is untouched
        assert conn.execute(select(approval_request.c.field_values).where(approval_request.c.id == req)).scalar_one() == entered
