"""Personal data: consent per subject and channel (service, API, detail page), subject export, erasure."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from crmkit.runtime.audit import flush_sealer
from crmkit.runtime.audit.verify import verify_chain
from crmkit.runtime.errors import PermissionDenied, ValidationFailed
from crmkit.runtime.privacy.erasure import erase_subject
from crmkit.runtime.privacy.subject_export import export_subject
from crmkit.runtime.privacy.tables import consent
from crmkit.runtime.storage import platform_tables as pt
from conftest import csrf_from

MEMBER = {"name": "韩梅梅", "mobile": "13912345678", "joined_on": "2024-03-15", "email": "meimei@example.com",
          "id_number": "110101199003071233", "address": "北京市海淀区中关村大街1号"}
SECRETS = ("韩梅梅", "13912345678", "meimei@example.com", "110101199003071233", "中关村")


@pytest.fixture
def member_id(services, actor):
    rid = services.records.create("membership.member", dict(MEMBER), actor)
    services.records.update("membership.member", rid, {"address": "上海市浦东新区中关村路2号"}, actor, expected_version=1)
    return rid


def consents(services):
    with services.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(consent).order_by(consent.c.id)).mappings()]


def audit_rows(services, **where):
    a = pt.audit
    flush_sealer(services.engine)  # ordered by the chain: wait for PostgreSQL's background seal
    with services.engine.connect() as conn:
        q = select(a).order_by(a.c.seq)
        for k, v in where.items():
            q = q.where(a.c[k] == v)
        return [dict(r) for r in conn.execute(q).mappings()]


def api(client, token, method, url, **kw):
    return getattr(client, method)(url, headers={"Authorization": f"Bearer {token}"}, **kw)


# --- consent ----------------------------------------------------------------------------------
def test_consent_api_grant_list_supersede_withdraw(app, services, api_token, member_id):
    c = app.test_client()
    base = f"/api/v1/privacy/membership.member/{member_id}/consents"
    r = api(c, api_token, "post", base, json={"channel": "sms", "purpose": "会员活动通知", "version": "2024-01"})
    assert r.status_code == 201, r.get_json()
    first = r.get_json()["data"]
    assert (first["channel"], first["purpose"], first["version"], first["active"]) == ("sms", "会员活动通知", "2024-01", True)
    # a new version for the same channel and purpose supersedes the open grant; history stays
    second = api(c, api_token, "post", base, json={"channel": "sms", "purpose": "会员活动通知", "version": "2024-06"}).get_json()["data"]
    api(c, api_token, "post", base, json={"channel": "email", "purpose": "newsletter", "version": "v1"})
    listed = api(c, api_token, "get", base).get_json()["data"]
    assert [(x["channel"], x["version"], x["active"]) for x in listed] == [("email", "v1", True), ("sms", "2024-06", True), ("sms", "2024-01", False)]
    r = api(c, api_token, "post", f"{base}/{second['id']}/withdraw")
    assert r.status_code == 200 and r.get_json()["data"]["active"] is False and r.get_json()["data"]["withdrawn_at"]
    again = api(c, api_token, "post", f"{base}/{second['id']}/withdraw")
    assert again.status_code == 422 and "already withdrawn" in json.dumps(again.get_json())
    rows = consents(services)
    assert [(x["channel"], x["version"], x["withdrawn_at"] is None) for x in rows] == [("sms", "2024-01", False), ("sms", "2024-06", False), ("email", "v1", True)]
    events = audit_rows(services, category="privacy")
    assert [e["action"] for e in events] == ["consent_grant", "consent_grant", "consent_grant", "consent_withdraw"]
    assert events[-1]["changes"]["consent_id"] == second["id"] and events[-1]["record_id"] == member_id
    with services.engine.connect() as conn:
        assert verify_chain(conn).ok


@pytest.mark.parametrize("body, field", [
    ({"channel": "pigeon", "purpose": "x", "version": "1"}, "channel"),
    ({"channel": "sms", "purpose": "  ", "version": "1"}, "purpose"),
    ({"channel": "sms", "purpose": "p" * 201, "version": "1"}, "purpose"),
    ({"channel": "sms", "purpose": "ok", "version": ""}, "version"),
    ({"channel": "sms", "purpose": "ok"}, "version"),
    (["sms"], "_schema"),
])
def test_bad_consent_input_is_refused_and_nothing_is_written(app, services, api_token, member_id, body, field):
    r = api(app.test_client(), api_token, "post", f"/api/v1/privacy/membership.member/{member_id}/consents", json=body)
    assert r.status_code == 422
    assert field in json.dumps(r.get_json())
    assert consents(services) == [] and audit_rows(services, category="privacy") == []


def test_consent_for_a_missing_record_or_consent_is_404(app, services, api_token, member_id):
    c = app.test_client()
    r = api(c, api_token, "post", "/api/v1/privacy/membership.member/999999/consents", json={"channel": "sms", "purpose": "x", "version": "1"})
    assert r.status_code == 404
    r = api(c, api_token, "post", f"/api/v1/privacy/membership.member/{member_id}/consents/424242/withdraw")
    assert r.status_code == 404 and "does not exist" in r.get_json()["message"]
    assert api(c, api_token, "get", "/api/v1/privacy/nope.thing/1/consents").status_code == 404
    assert app.test_client().get(f"/api/v1/privacy/membership.member/{member_id}/consents").status_code == 401
    assert consents(services) == []


def test_consent_panel_on_the_detail_page_with_csrf(client, services, member_id):
    detail = client.get(f"/e/membership.member/{member_id}").get_data(as_text=True)
    panel_url = f"/privacy/membership.member/{member_id}/consent"
    assert f'hx-get="{panel_url}"' in detail
    token = csrf_from(detail)
    # without the CSRF token the change is refused
    r = client.post(panel_url, data={"channel": "wechat", "purpose": "生日关怀", "version": "3"})
    assert r.status_code == 400 and consents(services) == []
    r = client.post(panel_url, data={"channel": "wechat", "purpose": "生日关怀", "version": "3"}, headers={"X-CSRFToken": token, "HX-Request": "true"})
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and "生日关怀" in body and body.lstrip().startswith('<div id="consent-panel"')
    assert [(x["channel"], x["purpose"]) for x in consents(services)] == [("wechat", "生日关怀")]
    # bad input re-renders the panel with the message, nothing stored
    r = client.post(panel_url, data={"channel": "wechat", "purpose": "", "version": "3"}, headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert r.status_code == 422 and ("1-200 characters" in r.get_data(as_text=True) or "1-200 个字符" in r.get_data(as_text=True))
    cid = consents(services)[0]["id"]
    r = client.post(f"{panel_url}/{cid}/withdraw", headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert r.status_code == 200 and consents(services)[0]["withdrawn_at"] is not None
    assert r.headers["Cache-Control"] == "no-store"


# --- subject export ---------------------------------------------------------------------------
def test_subject_export_has_record_consent_audit_and_linked_records(app, services, api_token, actor):
    level = services.records.create("membership.level", {"name": "银卡", "code": "SILVER", "level_value": 2}, actor)
    mid = services.records.create("membership.member", dict(MEMBER, level=level), actor)
    c = app.test_client()
    api(c, api_token, "post", f"/api/v1/privacy/membership.member/{mid}/consents", json={"channel": "email", "purpose": "news", "version": "1"})
    r = api(c, api_token, "get", f"/api/v1/privacy/membership.member/{mid}/export")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    data = r.get_json()
    assert data["subject"] == {"entity": "membership.member", "id": mid}
    assert data["record"]["name"] == "韩梅梅" and data["record"]["level"] == level
    assert [(x["channel"], x["purpose"]) for x in data["consents"]] == [("email", "news")]
    assert {e["action"] for e in data["audit"]} >= {"create", "consent_grant"}
    # the level's subject export lists the member linking to it
    level_export = export_subject(services, "membership.level", level, _admin(services))
    assert [m["id"] for m in level_export["linked_records"]["membership.member.level"]] == [mid]
    events = audit_rows(services, category="privacy", action="subject_export")
    assert [(e["entity"], e["record_id"]) for e in events] == [("membership.member", mid), ("membership.level", level)]
    assert events[1]["changes"]["linked"] == {"membership.member.level": 1}


def test_subject_export_download_in_the_browser(client, member_id):
    r = client.get(f"/privacy/membership.member/{member_id}/export")
    assert r.status_code == 200 and "attachment" in r.headers["Content-Disposition"]
    assert json.loads(r.get_data(as_text=True))["record"]["mobile"] == "13912345678"


def _admin(services):
    from crmkit.runtime.actor import Actor

    return Actor(id=1, username="admin", is_admin=True)


# --- erasure -----------------------------------------------------------------------------------
def test_erasure_anonymises_personal_fields_and_redacts_the_audit(app, services, api_token, member_id):
    c = app.test_client()
    api(c, api_token, "post", f"/api/v1/privacy/membership.member/{member_id}/consents", json={"channel": "sms", "purpose": "p", "version": "1"})
    r = api(c, api_token, "post", f"/api/v1/privacy/membership.member/{member_id}/erase")
    assert r.status_code == 200, r.get_json()
    assert set(r.get_json()["data"]["fields"]) == {"name", "birthday", "mobile", "email", "id_number", "address"}
    rec = services.queries.get("membership.member", member_id, _admin(services))
    assert rec["name"] == "[erased]" and rec["mobile"] == f"+999{member_id:011d}"
    assert rec["email"] is None and rec["id_number"] is None and rec["address"] is None and rec["birthday"] is None
    assert rec["joined_on"] is not None  # not personal: kept
    # no personal value survives in the audit log or the outbox
    rows = audit_rows(services, entity="membership.member", record_id=member_id)
    dump = json.dumps([r["changes"] for r in rows], ensure_ascii=False)
    with services.engine.connect() as conn:
        dump += json.dumps([dict(o) for o in conn.execute(select(pt.outbox.c.payload)).mappings()], ensure_ascii=False, default=str)
    for secret in SECRETS:
        assert secret not in dump, secret
    redacted = [r["seq"] for r in rows if r["redacted"]]
    assert len(redacted) == 3  # create, address update, the erasure's own update
    erase_event = [r for r in rows if r["action"] == "erase"][0]
    assert sorted(erase_event["changes"]["redacted_entries"]) == sorted(redacted)
    # consent is kept as evidence; the chain still verifies
    assert len(consents(services)) == 1
    with services.engine.connect() as conn:
        report = verify_chain(conn)
    assert report.ok, [str(p) for p in report.problems]


def test_erasure_refusals(app, services, member_id, actor):
    viewer = type(_admin(services))(id=99, username="vera", is_admin=False)
    with pytest.raises(PermissionDenied):
        erase_subject(services, "membership.member", member_id, viewer)
    level = services.records.create("membership.level", {"name": "铜卡", "code": "BRONZE", "level_value": 1}, actor)
    with pytest.raises(ValidationFailed) as exc:
        erase_subject(services, "membership.level", level, _admin(services))
    assert "no fields marked as personal data" in exc.value.field_errors["_schema"][0]
    assert services.queries.get("membership.member", member_id, _admin(services))["name"] == "韩梅梅"
    assert audit_rows(services, action="erase") == []


def test_erase_from_the_detail_page(client, services, member_id):
    detail = client.get(f"/e/membership.member/{member_id}").get_data(as_text=True)
    token = csrf_from(detail)
    panel = client.get(f"/privacy/membership.member/{member_id}/consent").get_data(as_text=True)
    assert f'/privacy/membership.member/{member_id}/erase' in panel and f'/privacy/membership.member/{member_id}/export' in panel
    assert client.post(f"/privacy/membership.member/{member_id}/erase").status_code == 400  # no CSRF token
    assert services.queries.get("membership.member", member_id, _admin(services))["name"] == "韩梅梅"
    r = client.post(f"/privacy/membership.member/{member_id}/erase", data={"csrf_token": token})
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/e/membership.member/{member_id}")
    assert services.queries.get("membership.member", member_id, _admin(services))["name"] == "[erased]"
    page = client.get(f"/e/membership.member/{member_id}").get_data(as_text=True)
    assert "韩梅梅" not in page and "13912345678" not in page


# --- erasure reaches child rows and records that link to the subject ------------------------------------------------
FAMILY = {"id": "ent_mbr_family", "name": "member_family", "label": {"zh": "家庭成员", "en": "Family member"}, "title_field": "relative",
          "is_child": True, "parent": "membership.member",
          "fields": [{"id": "fld_fam_relative", "name": "relative", "type": "text", "personal": True, "required": True, "max_length": 30,
                      "label": {"zh": "姓名", "en": "Name"}},
                     {"id": "fld_fam_mobile", "name": "mobile", "type": "phone", "personal": True, "label": {"zh": "手机号", "en": "Mobile"}},
                     {"id": "fld_fam_relation", "name": "relation", "type": "text", "max_length": 10, "label": {"zh": "关系", "en": "Relation"}}]}
CONTACT_LOG = {"id": "ent_mbr_contact_log", "name": "contact_log", "label": {"zh": "联系记录", "en": "Contact log"}, "title_field": "summary",
               "fields": [{"id": "fld_cl_member", "name": "member", "type": "link", "target": "membership.member", "required": True,
                           "label": {"zh": "会员", "en": "Member"}},
                          {"id": "fld_cl_summary", "name": "summary", "type": "text", "personal": True, "required": True, "max_length": 200,
                           "label": {"zh": "内容", "en": "Summary"}},
                          {"id": "fld_cl_channel", "name": "channel", "type": "text", "max_length": 20, "label": {"zh": "渠道", "en": "Channel"}}]}


def add_family_and_contact_log(services):
    import copy

    from crmkit.runtime.meta.compile import RawDocument
    from crmkit.runtime.storage.plan import Planner, apply_plan

    with services.engine.connect() as conn:
        member = copy.deepcopy(conn.execute(select(pt.document.c.body).where(pt.document.c.kind == "entity",
                                                                             pt.document.c.key == "membership.member")).scalar_one())
    member["fields"].append({"id": "fld_mbr_family", "name": "family", "type": "child_table", "entity": "membership.member_family",
                             "label": {"zh": "家庭成员", "en": "Family"}})
    services.store.save([RawDocument("entity", "membership", member, "test:member.json"),
                         RawDocument("entity", "membership", FAMILY, "test:member_family.json"),
                         RawDocument("entity", "membership", CONTACT_LOG, "test:contact_log.json")])
    apply_plan(services.engine, Planner(services.engine, services.store.catalog()).plan())


def test_erasure_covers_child_rows_and_linking_records_and_keeps_the_chain(app, services, actor):
    add_family_and_contact_log(services)
    admin = _admin(services)
    mid = services.records.create("membership.member", {**MEMBER, "family": [{"relative": "韩父亲", "mobile": "13700001111", "relation": "父"}]}, actor)
    services.records.update("membership.member", mid, {"family": [{"id": services.queries.get("membership.member", mid, admin)["family"][0]["id"],
                                                                    "relative": "韩爸爸"}, {"relative": "韩妈妈", "mobile": "13700002222"}]},
                            actor, expected_version=1)
    other = services.records.create("membership.member", {"name": "李雷", "mobile": "13955556666", "joined_on": "2024-01-01"}, actor)
    logs = [services.records.create("membership.contact_log", {"member": mid, "summary": f"韩梅梅来电 13912345678 #{i}", "channel": "电话"}, actor)
            for i in range(3)]
    kept = services.records.create("membership.contact_log", {"member": other, "summary": "李雷来电", "channel": "电话"}, actor)

    result = erase_subject(services, "membership.member", mid, admin)
    assert result["child_rows"] == 2 and result["linked_records"] == {"membership.contact_log.member": 3}

    rec = services.queries.get("membership.member", mid, admin)
    assert [r["relative"] for r in rec["family"]] == ["[erased]", "[erased]"] and [r["mobile"] for r in rec["family"]] == [None, None]
    assert [r["relation"] for r in rec["family"]] == ["父", None]  # not personal: kept
    for lid in logs:
        log = services.queries.get("membership.contact_log", lid, admin)
        assert log["summary"] == "[erased]" and log["channel"] == "电话" and log["member"] == mid
    assert services.queries.get("membership.contact_log", kept, admin)["summary"] == "李雷来电"  # someone else's record
    assert services.queries.get("membership.member", other, admin)["name"] == "李雷"

    rows = audit_rows(services)
    dump = json.dumps([r["changes"] for r in rows if not (r["entity"] == "membership.member" and r["record_id"] == other)
                       and not (r["entity"] == "membership.contact_log" and r["record_id"] == kept)], ensure_ascii=False)
    for secret in SECRETS + ("韩父亲", "韩爸爸", "韩妈妈", "13700001111", "13700002222", "韩梅梅来电"):
        assert secret not in dump, secret
    assert "李雷来电" in json.dumps([r["changes"] for r in rows], ensure_ascii=False)
    assert len([r for r in rows if r["action"] == "erase"]) == 4
    with services.engine.connect() as conn:
        report = verify_chain(conn)
    assert report.ok, [str(p) for p in report.problems]

    again = erase_subject(services, "membership.member", mid, admin)  # idempotent: still erased, nothing new leaks
    assert again["linked_records"] == {"membership.contact_log.member": 3}
    assert services.queries.get("membership.member", mid, admin)["name"] == "[erased]"
