"""Sales rules: duplicate detection, lost reason, quote totals, lead conversion, the lead pool and fair assignment."""
from __future__ import annotations

import collections
import datetime as dt
import decimal

import pytest
from sqlalchemy import insert, select

from crm_support import crm  # noqa: F401
from crmkit.apps.crm.assignment import assign_lead, assign_ticket
from crmkit.apps.crm.dedupe import name_key
from crmkit.apps.crm.leads import FIELD_MAP, LIFECYCLE, claim_lead, convert_lead, return_to_pool
from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.db import write_transaction
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.org.tables import ab_user, user_org
from crmkit.runtime.storage import platform_tables as pt

UTC = dt.timezone.utc


def test_company_names_normalise():
    assert name_key("上海华信科技有限公司") == name_key("上海 华信科技（股份）公司") == name_key("上海华信科技股份有限公司") == "上海华信科技"
    assert name_key("Acme Co., Ltd.") == name_key("ACME Limited") == "acme"
    assert name_key("上海华信科技") != name_key("上海华信电子")


def test_duplicates_are_refused_on_create_and_update(crm):
    a = crm.records.create("crm.account", {"name": "上海华信科技有限公司", "email": "info@huaxin.cn"}, SYSTEM)
    with pytest.raises(ValidationFailed) as exc:
        crm.records.create("crm.account", {"name": "上海 华信科技（股份）公司"}, SYSTEM)
    assert "name" in exc.value.field_errors and f"#{a}" in str(exc.value.field_errors["name"][0])
    with pytest.raises(ValidationFailed) as exc:
        crm.records.create("crm.account", {"name": "华信电子", "email": "INFO@huaxin.cn"}, SYSTEM)
    assert set(exc.value.field_errors) == {"email"}
    c = crm.records.create("crm.contact", {"name": "张伟", "mobile": "13800138000", "account": a}, SYSTEM)
    with pytest.raises(ValidationFailed) as exc:
        crm.records.create("crm.contact", {"name": "张伟2", "mobile": "13800138000"}, SYSTEM)
    assert "mobile" in exc.value.field_errors
    assert crm.queries.list("crm.contact", SYSTEM, count="exact").total == 1
    other = crm.records.create("crm.account", {"name": "北京远航物流有限公司"}, SYSTEM)
    row = crm.queries.get("crm.account", other, SYSTEM)
    with pytest.raises(ValidationFailed):
        crm.records.update("crm.account", other, {"name": "上海华信科技"}, SYSTEM, expected_version=row["row_version"])
    # updating a record keeps its own values: no self-duplicate
    crow = crm.queries.get("crm.contact", c, SYSTEM)
    crm.records.update("crm.contact", c, {"mobile": "13800138000", "title": "总经理"}, SYSTEM, expected_version=crow["row_version"])
    # an account cannot be its own ancestor
    child = crm.records.create("crm.account", {"name": "华信科技（苏州）分公司实业", "parent": a}, SYSTEM)
    arow = crm.queries.get("crm.account", a, SYSTEM)
    with pytest.raises(ValidationFailed) as exc:
        crm.records.update("crm.account", a, {"parent": child}, SYSTEM, expected_version=arow["row_version"])
    assert "parent" in exc.value.field_errors


def test_stage_moves_by_workflow_with_probability_and_lost_reason(crm):
    a = crm.records.create("crm.account", {"name": "杭州云帆"}, SYSTEM)
    with pytest.raises(ValidationFailed) as exc:  # the stage is the workflow's: not settable on create or update
        crm.records.create("crm_sales.opportunity", {"name": "CRM 项目", "account": a, "stage": "proposal"}, SYSTEM)
    assert list(exc.value.field_errors) == ["stage"]
    oid = crm.records.create("crm_sales.opportunity", {"name": "CRM 项目", "account": a, "amount": "100000"}, SYSTEM)
    opp = crm.queries.get("crm_sales.opportunity", oid, SYSTEM)
    assert (opp["stage"], opp["probability"], opp["weighted_amount"]) == ("prospecting", 10, decimal.Decimal("10000.00"))
    crm.workflows.transition("crm_sales.opportunity", oid, "qualify", SYSTEM)
    crm.workflows.transition("crm_sales.opportunity", oid, "propose", SYSTEM)
    opp = crm.queries.get("crm_sales.opportunity", oid, SYSTEM)
    assert (opp["stage"], opp["probability"], opp["weighted_amount"]) == ("proposal", 50, decimal.Decimal("50000.00"))
    with pytest.raises(ValidationFailed) as exc:
        crm.workflows.transition("crm_sales.opportunity", oid, "lose", SYSTEM)
    assert list(exc.value.field_errors) == ["lost_reason"]
    assert crm.queries.get("crm_sales.opportunity", oid, SYSTEM)["stage"] == "proposal"
    crm.workflows.transition("crm_sales.opportunity", oid, "lose", SYSTEM, values={"lost_reason": "预算冻结"})
    opp = crm.queries.get("crm_sales.opportunity", oid, SYSTEM)
    assert (opp["stage"], opp["probability"], opp["weighted_amount"], opp["won"]) == ("lost", 0, decimal.Decimal("0.00"), 0)


def test_quote_total_follows_the_lines(crm):
    p = crm.records.create("crm_sales.product", {"code": "STD", "name": "标准版", "list_price": "29800"}, SYSTEM)
    qid = crm.records.create("crm_sales.quote", {"title": "报价", "lines": [
        {"product": p, "quantity": "2", "unit_price": "29800", "discount": "10"}, {"description": "实施", "quantity": "3", "unit_price": "2500.50"}]}, SYSTEM)
    q = crm.queries.get("crm_sales.quote", qid, SYSTEM)
    assert q["total"] == decimal.Decimal("53640.00") + decimal.Decimal("7501.50")
    first = q["lines"][0]
    crm.records.update("crm_sales.quote", qid, {"lines": [{"id": first["id"], "quantity": "1"}]}, SYSTEM, expected_version=q["row_version"])
    assert crm.queries.get("crm_sales.quote", qid, SYSTEM)["total"] == decimal.Decimal("26820.00")


def add_user(crm, name: str, unit: int) -> int:
    with write_transaction(crm.engine) as conn:
        uid = conn.execute(insert(ab_user).values(username=name, first_name=name, last_name="x", email=f"{name}@example.com", active=True)).inserted_primary_key[0]
        conn.execute(insert(user_org).values(user_id=uid, org_unit_id=unit))
    return uid


def add_unit(crm, code: str) -> int:
    with write_transaction(crm.engine) as conn:
        return conn.execute(pt.org_unit.insert().values(name=code, code=code, kind="department", path="/")).inserted_primary_key[0]


def test_round_robin_is_fair_and_region_routing_uses_the_team(crm):
    east = add_unit(crm, "SALES_EAST")
    reps = [add_user(crm, f"rep{i}", east) for i in range(3)]
    leads = [crm.records.create("crm_sales.lead", {"name": f"客户{i}", "mobile": f"1390000{i:04d}", "region": "east"}, SYSTEM) for i in range(10)]
    got = [assign_lead(crm, lid) for lid in leads]
    counts = collections.Counter(got)
    assert set(counts) == set(reps) and max(counts.values()) - min(counts.values()) <= 1
    assert got[:3] == sorted(reps) and got[3:6] == sorted(reps)  # strict turns
    lead = crm.queries.get("crm_sales.lead", leads[0], SYSTEM)
    assert lead["owner"] == got[0] and lead["team"] == east and lead["last_followed_at"] is not None
    lone = crm.records.create("crm_sales.lead", {"name": "无团队", "region": "northwest"}, SYSTEM)
    with pytest.raises(ValidationFailed):
        assign_lead(crm, lone)


def test_least_loaded_ticket_assignment(crm):
    group = add_unit(crm, "SVC_GENERAL")
    a, b = add_user(crm, "agent_a", group), add_user(crm, "agent_b", group)
    t1 = crm.records.create("crm_service.ticket", {"subject": "一", "assignee": a}, SYSTEM)
    crm.records.create("crm_service.ticket", {"subject": "二", "assignee": a}, SYSTEM)
    new = crm.records.create("crm_service.ticket", {"subject": "三"}, SYSTEM)
    assert assign_ticket(crm, new) == b
    row = crm.queries.get("crm_service.ticket", t1, SYSTEM)
    crm.records.update("crm_service.ticket", t1, {"status": "resolved"}, SYSTEM, expected_version=row["row_version"])
    nxt = crm.records.create("crm_service.ticket", {"subject": "四"}, SYSTEM)
    assert assign_ticket(crm, nxt) == a  # a: 1 open, b: 1 open → lower id wins; resolved tickets do not count


def test_stale_leads_return_to_the_pool_once(crm):
    unit = add_unit(crm, "T1")
    rep = add_user(crm, "rep_pool", unit)
    now = dt.datetime(2026, 6, 1, tzinfo=UTC)
    stale = crm.records.create("crm_sales.lead", {"name": "老线索", "owner": rep, "last_followed_at": (now - dt.timedelta(days=31)).isoformat()}, SYSTEM)
    fresh = crm.records.create("crm_sales.lead", {"name": "新线索", "owner": rep, "last_followed_at": (now - dt.timedelta(days=5)).isoformat()}, SYSTEM)
    won = crm.records.create("crm_sales.lead", {"name": "无效", "owner": rep, "status": "disqualified", "last_followed_at": (now - dt.timedelta(days=90)).isoformat()}, SYSTEM)
    assert return_to_pool(crm, now, days=30) == 1
    assert return_to_pool(crm, now, days=30) == 0
    rows = {r["id"]: r for r in crm.queries.list("crm_sales.lead", SYSTEM, limit=10).rows}
    assert rows[stale]["owner"] is None and rows[stale]["pooled_at"] == now
    assert rows[fresh]["owner"] == rep and rows[won]["owner"] == rep
    other = add_user(crm, "rep_other", unit)
    claim_lead(crm, stale, Actor(id=other, username="rep_other", is_admin=True))
    claimed = crm.queries.get("crm_sales.lead", stale, SYSTEM)
    assert claimed["owner"] == other and claimed["pooled_at"] is None
    with pytest.raises(ValidationFailed):
        claim_lead(crm, stale, Actor(id=rep, username="rep_pool", is_admin=True))


def test_conversion_keeps_every_field_and_moves_activities(crm):
    unit = add_unit(crm, "T2")
    lid = crm.records.create("crm_sales.lead", {"name": "李娜", "company": "苏州恒达精密制造有限公司", "title": "采购经理", "mobile": "13912345678",
                                                "email": "lina@hengda.cn", "source": "exhibition", "status": "qualified", "region": "east", "team": unit,
                                                "province": "江苏省", "city": "苏州市", "industry": "manufacturing", "budget": "300000",
                                                "description": "需要统一管理经销商"}, SYSTEM)
    acts = [crm.records.create("crm.activity", {"subject": s, "kind": "call", "regarding_type": "lead", "regarding_id": lid}, SYSTEM) for s in ("电话", "拜访")]
    result = convert_lead(crm, lid, SYSTEM)
    acc = crm.queries.get("crm.account", result.account, SYSTEM)
    con = crm.queries.get("crm.contact", result.contact, SYSTEM)
    opp = crm.queries.get("crm_sales.opportunity", result.opportunity, SYSTEM)
    lead = crm.queries.get("crm_sales.lead", lid, SYSTEM)
    assert (acc["name"], acc["industry"], acc["region"], acc["province"], acc["city"], acc["team"]) == ("苏州恒达精密制造有限公司", "manufacturing", "east", "江苏省", "苏州市", unit)
    # every lead field is mapped somewhere or describes the lead itself, and each mapped value arrived
    lead_fields = {f.name for f in crm.store.catalog().entity("crm_sales.lead").fields}
    assert lead_fields == set(FIELD_MAP) | LIFECYCLE
    records = {"crm.account": acc, "crm.contact": con, "crm_sales.opportunity": opp}
    source = crm.queries.get("crm_sales.lead", lid, SYSTEM)
    for name, targets in FIELD_MAP.items():
        for target in targets:
            key, _, field = target.rpartition(".")
            if name != "owner":  # no owner on the lead: the converting user owns the new records
                assert records[key][field] == source[name], (name, target)
    assert (con["name"], con["title"], con["mobile"], con["email"], con["account"]) == ("李娜", "采购经理", "13912345678", "lina@hengda.cn", result.account)
    assert (opp["amount"], opp["source"], opp["lead"], opp["description"], opp["contact"]) == (decimal.Decimal("300000"), "exhibition", lid, "需要统一管理经销商", result.contact)
    assert lead["status"] == "converted" and lead["converted_account"] == result.account and lead["converted_contact"] == result.contact
    assert result.activities == 2
    for aid in acts:
        a = crm.queries.get("crm.activity", aid, SYSTEM)
        assert (a["regarding_type"], a["regarding_id"], a["account"], a["contact"]) == ("opportunity", result.opportunity, result.account, result.contact)
    with pytest.raises(ValidationFailed):
        convert_lead(crm, lid, SYSTEM)


def test_conversion_is_all_or_nothing(crm):
    crm.records.create("crm.account", {"name": "苏州恒达精密制造"}, SYSTEM)  # the lead's company would be a duplicate
    lid = crm.records.create("crm_sales.lead", {"name": "王强", "company": "苏州恒达精密制造有限公司", "mobile": "13700000000"}, SYSTEM)
    with pytest.raises(ValidationFailed):
        convert_lead(crm, lid, SYSTEM)
    crm.records.create("crm.contact", {"name": "王强", "mobile": "13700000000"}, SYSTEM)  # the contact now collides too
    existing = crm.queries.list("crm.account", SYSTEM, limit=5).rows[0]["id"]
    with pytest.raises(ValidationFailed):
        convert_lead(crm, lid, SYSTEM, account_id=existing)  # the contact step fails: nothing is kept
    with crm.engine.connect() as conn:
        assert conn.execute(select(pt.audit.c.id).where(pt.audit.c.entity == "crm_sales.opportunity", pt.audit.c.category == "record")).first() is None
    assert crm.queries.get("crm_sales.lead", lid, SYSTEM)["status"] == "new"
    assert crm.queries.list("crm.contact", SYSTEM, count="exact").total == 1
