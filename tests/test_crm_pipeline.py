"""The sales pipeline: kanban moves run the opportunity workflow, discount approval on quotes, quote → contract →
order, and the forecast and sales reports checked against an independent computation over the demo data."""
from __future__ import annotations

import collections
import datetime as dt
import decimal
import json
import statistics
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import csrf_from
from crm_support import crm  # noqa: F401
from crmkit.apps.crm.demo_sales import sales_team
from crmkit.apps.crm.forecast import target_vs_actual
from crmkit.apps.crm.sales import today
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.storage.platform_tables import audit as audit_log
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.installer import install
from crmkit.runtime.reports.runner import run_report
from crmkit.runtime.workflow.errors import TransitionNotAvailable
from crmkit.runtime.workflow.tables import approval_task, workflow_history

OPP, QUOTE = "crm_sales.opportunity", "crm_sales.quote"
WORKFLOW = json.loads((Path(__file__).parents[1] / "apps/crm/sales/workflows/opportunity.json").read_text("utf-8"))
D = decimal.Decimal


def history(services, entity, rid):
    h = workflow_history
    with services.engine.connect() as conn:
        return [(r.transition, r.from_state, r.to_state) for r in conn.execute(
            select(h).where(h.c.entity == entity, h.c.record_id == rid, h.c.event == "transitioned").order_by(h.c.id))]


# --- kanban ------------------------------------------------------------------------------
@pytest.fixture
def crm_app(make_app):
    app = make_app("base")
    s = app.extensions["crmkit"]
    install(s, "crm_sales")
    from crmkit.runtime.web.permissions import sync_entity_permissions

    with app.app_context():
        sync_entity_permissions(app, s)
    return app


def test_kanban_moves_run_the_workflow_transition(crm_app):
    from conftest import login

    s = crm_app.extensions["crmkit"]
    c = crm_app.test_client()
    login(c)
    acc = s.records.create("crm.account", {"name": "看板测试科技有限公司"}, SYSTEM)
    oid = s.records.create(OPP, {"name": "看板商机", "account": acc}, SYSTEM)
    html = c.get(f"/e/{OPP}/kanban?by=stage").get_data(as_text=True)
    assert 'data-workflow="pipeline"' in html and 'dialog class="kanban-dialog" data-value="lost"' in html and 'name="v_lost_reason"' in html
    token = csrf_from(html)

    def move(value, **extra):
        row = s.queries.get(OPP, oid, SYSTEM)
        data = {"csrf_token": token, "record_id": oid, "row_version": row["row_version"], "field": "stage", "value": value, **extra}
        return c.post(f"/e/{OPP}/kanban/move", data=data, headers={"HX-Request": "true"}), row

    # No transition leads from prospecting to won: refused with the reason, nothing changes.
    resp, before = move("won")
    assert resp.status_code == 409 and "不能从“初步接洽”移到“赢单”" in resp.get_data(as_text=True)
    assert s.queries.get(OPP, oid, SYSTEM) == before and history(s, OPP, oid) == []
    # Allowed: the transition runs (probability and weighted amount follow), recorded in history and the audit log.
    resp, _ = move("qualification")
    assert resp.status_code == 200 and resp.get_json()["state"] == "qualification"
    row = s.queries.get(OPP, oid, SYSTEM)
    assert (row["stage"], row["workflow_state"], row["probability"], row["weighted_amount"]) == ("qualification", "qualification", D("20.00"), None)
    assert resp.get_json()["row_version"] == row["row_version"]
    assert history(s, OPP, oid) == [("qualify", "prospecting", "qualification")]
    with s.engine.connect() as conn:
        audits = [r.changes for r in conn.execute(select(audit_log).where(audit_log.c.entity == OPP, audit_log.c.record_id == oid,
                                                                          audit_log.c.action == "transition"))]
    assert [(a["transition"], a["from"], a["to"]) for a in audits] == [("qualify", "prospecting", "qualification")]
    # The guard of 'propose' needs an amount: refused with the guard's message, record unchanged.
    resp, before = move("proposal")
    assert resp.status_code == 422 and "进入方案报价前请先填写商机金额" in resp.get_data(as_text=True)
    assert s.queries.get(OPP, oid, SYSTEM) == before
    # Lost needs a reason (a transition field): refused without, done with it (the dialog's values).
    resp, before = move("lost")
    assert resp.status_code == 422 and "输单原因: 执行“输单”时此项必填" in resp.get_data(as_text=True)
    assert s.queries.get(OPP, oid, SYSTEM) == before
    resp, _ = move("lost", v_lost_reason="预算冻结", comment="客户明年再议")
    assert resp.status_code == 200
    row = s.queries.get(OPP, oid, SYSTEM)
    assert (row["stage"], row["lost_reason"], row["probability"], row["closed_on"]) == ("lost", "预算冻结", D("0.00"), today())
    # A stale card is refused.
    stale = c.post(f"/e/{OPP}/kanban/move", data={"csrf_token": token, "record_id": oid, "row_version": before["row_version"], "field": "stage",
                                                   "value": "qualification", "comment": "x"}, headers={"HX-Request": "true"})
    assert stale.status_code == 409 and s.queries.get(OPP, oid, SYSTEM)["stage"] == "lost"
    # Without JavaScript the move form posts and lands back on the board with the message.
    plain = c.post(f"/e/{OPP}/kanban/move", data={"csrf_token": token, "record_id": oid, "row_version": row["row_version"], "field": "stage",
                                                   "value": "won"})
    assert plain.status_code == 303 and s.queries.get(OPP, oid, SYSTEM)["stage"] == "lost"
    # The stage is not writable any other way.
    with pytest.raises(ValidationFailed):
        s.records.update(OPP, oid, {"stage": "won"}, SYSTEM, expected_version=row["row_version"])
    assert s.queries.get(OPP, oid, SYSTEM)["stage"] == "lost"


def test_a_board_by_a_field_no_workflow_owns_still_updates_the_field(crm_app):
    from conftest import login

    s = crm_app.extensions["crmkit"]
    c = crm_app.test_client()
    login(c)
    acc = s.records.create("crm.account", {"name": "来源测试有限公司"}, SYSTEM)
    oid = s.records.create(OPP, {"name": "来源", "account": acc, "source": "web"}, SYSTEM)
    html = c.get(f"/e/{OPP}/kanban?by=source").get_data(as_text=True)
    assert 'data-workflow="' not in html
    row = s.queries.get(OPP, oid, SYSTEM)
    resp = c.post(f"/e/{OPP}/kanban/move", data={"csrf_token": csrf_from(html), "record_id": oid, "row_version": row["row_version"],
                                                  "field": "source", "value": "phone"})
    assert resp.status_code == 303 and s.queries.get(OPP, oid, SYSTEM)["source"] == "phone" and history(s, OPP, oid) == []


def test_workflow_mirror_field_must_be_a_read_only_select():
    from crmkit.runtime.meta.model import EntityDef, FieldDef, Label
    from crmkit.runtime.meta.workflows import check_workflow, compile_workflow

    body = dict(WORKFLOW)
    opts = {"options": tuple({"value": s["name"]} for s in WORKFLOW["states"][:3])}
    entity = EntityDef(id="e", app="a", name="b", label=Label("b", "b"), plural_label=Label("b", "b"), title_field="stage",
                       fields=(FieldDef(id="f1", name="stage", type="single_select", label=Label("s", "s"), config=opts),
                               FieldDef(id="f2", name="amount", type="money", label=Label("a", "a"))))
    wf = compile_workflow({**body, "entity": "a.b", "transitions": []}, "wf.json")
    problems = [m for _, p, m in check_workflow(wf, {"a.b": entity}, None) if p == "/field"]
    assert any("must be read-only" in m for m in problems) and any("negotiation, won, lost" in m for m in problems)


# --- quotes: discount approval, quote → contract → order ----------------------------------
def quote(crm, discounts, acc=None, opp=None):
    n = crm.queries.list("crm_sales.product", SYSTEM, count="exact").total
    acc = acc or crm.records.create("crm.account", {"name": f"报价客户{'甲乙丙丁'[n]}有限公司"}, SYSTEM)
    p1 = crm.records.create("crm_sales.product", {"code": f"P{n}", "name": "专业版", "list_price": "59800"}, SYSTEM)
    lines = [{"product": p1, "description": f"行{i}", "quantity": str(i + 1), "unit_price": "1234.50", "discount": str(d)} for i, d in enumerate(discounts)]
    return crm.records.create(QUOTE, {"title": "年度报价", "account": acc, "opportunity": opp, "lines": lines}, SYSTEM)


def test_discount_above_the_threshold_waits_for_a_managers_approval(crm):
    _, manager = sales_team(crm, SYSTEM)
    below, at, above = quote(crm, [5, 0]), quote(crm, [10]), quote(crm, [5, 15])
    assert [crm.queries.get(QUOTE, q, SYSTEM)["needs_approval"] for q in (below, at, above)] == [False, False, True]
    for q in (below, at):  # at or below the threshold: sent at once
        assert crm.workflows.transition(QUOTE, q, "send", SYSTEM).state == "sent"
        assert crm.queries.get(QUOTE, q, SYSTEM)["status"] == "sent"
    with pytest.raises(ValidationFailed) as exc:
        crm.workflows.transition(QUOTE, above, "send", SYSTEM)
    assert "sales manager's approval" in str(exc.value.field_errors["_schema"][0])
    with pytest.raises(ValidationFailed):  # below the threshold there is nothing to approve
        crm.workflows.transition(QUOTE, quote(crm, [3]), "request_discount", SYSTEM)
    req = crm.workflows.transition(QUOTE, above, "request_discount", SYSTEM).pending_approval
    assert req and crm.queries.get(QUOTE, above, SYSTEM)["status"] == "draft"
    with pytest.raises(TransitionNotAvailable):  # blocked while the approval is pending
        crm.workflows.transition(QUOTE, above, "send", SYSTEM)
    with crm.engine.connect() as conn:
        task = conn.execute(select(approval_task.c.id).where(approval_task.c.request_id == req, approval_task.c.assignee_id == manager.id)).scalar_one()
    assert crm.workflows.decide(task, "approve", manager, "同意") == "approved"
    assert crm.queries.get(QUOTE, above, SYSTEM)["status"] == "approved"
    crm.workflows.transition(QUOTE, above, "send_approved", SYSTEM)
    row = crm.queries.get(QUOTE, above, SYSTEM)
    assert row["status"] == "sent"
    # Sent lines are frozen: a bigger discount cannot slip in after approval.
    with pytest.raises(ValidationFailed):
        crm.records.update(QUOTE, above, {"lines": [{"description": "x", "quantity": "1", "unit_price": "1", "discount": "90"}]}, SYSTEM,
                           expected_version=row["row_version"])
    assert crm.queries.get(QUOTE, above, SYSTEM)["max_discount"] == D("15.00")


def _lines(crm, entity, rid):
    t = crm.records.table_cache.tables(crm.store.catalog())[entity]
    with crm.engine.connect() as conn:
        return [(r.product, r.description, D(r.quantity), D(r.unit_price), D(r.discount or 0))
                for r in conn.execute(select(t).where(t.c.parent_id == rid).order_by(t.c.sort_order, t.c.id))]


def test_quote_to_contract_to_order_keeps_lines_and_amounts(crm):
    acc = crm.records.create("crm.account", {"name": "流程测试集团有限公司"}, SYSTEM)
    opp = crm.records.create(OPP, {"name": "流程商机", "account": acc, "amount": "80000"}, SYSTEM)
    q = quote(crm, [0, 5, 10], acc=acc, opp=opp)
    expected = sum(((i + 1) * D("1234.50") * (1 - D(d) / 100)).quantize(D("0.01"), decimal.ROUND_HALF_UP) for i, d in enumerate([0, 5, 10]))
    assert crm.queries.get(QUOTE, q, SYSTEM)["total"] == expected
    crm.workflows.transition(QUOTE, q, "send", SYSTEM)
    crm.workflows.transition(QUOTE, q, "accept", SYSTEM)
    contracts = crm.queries.list("crm_sales.contract", SYSTEM, filter={"field": "quote", "op": "eq", "value": q}, count="exact")
    assert contracts.total == 1
    c = contracts.rows[0]
    assert (c["status"], c["total"], c["account"], c["opportunity"]) == ("draft", expected, acc, opp)
    assert _lines(crm, "crm_sales.contract_line", c["id"]) == _lines(crm, "crm_sales.quote_line", q) and len(_lines(crm, "crm_sales.quote_line", q)) == 3
    crm.workflows.transition("crm_sales.contract", c["id"], "sign", SYSTEM, values={"signed_on": "2026-03-02"})
    orders = crm.queries.list("crm_sales.order", SYSTEM, filter={"field": "contract", "op": "eq", "value": c["id"]}, count="exact")
    assert orders.total == 1
    o = orders.rows[0]
    assert (o["total"], o["ordered_on"], o["status"], o["number"].startswith("SO")) == (expected, dt.date(2026, 3, 2), "open", True)
    assert _lines(crm, "crm_sales.order_line", o["id"]) == _lines(crm, "crm_sales.quote_line", q)
    assert crm.queries.get("crm_sales.contract", c["id"], SYSTEM)["status"] == "signed"
    with pytest.raises(TransitionNotAvailable):  # accepted is final: no second contract
        crm.workflows.transition(QUOTE, q, "accept", SYSTEM)


def test_sales_target_is_monthly_and_unique_per_salesperson(crm):
    reps, _ = sales_team(crm, SYSTEM)
    t = crm.records.create("crm_sales.sales_target", {"salesperson": reps[0].user_id, "period": "2026-05-17", "target": "100000"}, SYSTEM)
    assert crm.queries.get("crm_sales.sales_target", t, SYSTEM)["period"] == dt.date(2026, 5, 1)
    with pytest.raises(ValidationFailed) as exc:
        crm.records.create("crm_sales.sales_target", {"salesperson": reps[0].user_id, "period": "2026-05-01", "target": "1"}, SYSTEM)
    assert "period" in exc.value.field_errors
    assert crm.queries.list("crm_sales.sales_target", SYSTEM, count="exact").total == 1


# --- forecast and reports against an independent computation ------------------------------
@pytest.fixture
def demo(databases, tmp_path_factory):
    from core_support import fresh_services

    s = fresh_services(databases, tmp_path_factory)
    install(s, "crm_sales", demo=True, demo_size=60)
    yield s
    s.engine.dispose()


def raw(s, entity):
    t = s.records.table_cache.tables(s.store.catalog())[entity]
    with s.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(t).where(t.c.deleted_at.is_(None))).mappings()]


def report(s, name, params=None):
    res = run_report(s, SYSTEM, s.store.catalog().report(f"crm_sales.{name}"), params or {})
    return {tuple(c.key for c in r.cells): r.values for r in res.rows}, res


def _d(v):
    return D(str(v)) if v is not None else D(0)


def _day(v):
    return v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v)[:10])


def test_forecast_and_reports_match_an_independent_computation(demo):
    s = demo
    opps = raw(s, OPP)
    probability = {t["to"]: next(a["set"]["probability"] for a in t["actions"] if "set" in a) for t in WORKFLOW["transitions"] if t["name"] != "reopen"}
    probability["prospecting"] = 10
    stages = collections.Counter(o["stage"] for o in opps)
    assert all(stages[k] for k in ("prospecting", "proposal", "won", "lost")), stages  # the demo fills the pipeline
    for o in opps:  # every stage came from a transition, and the probability is the workflow's for that stage
        assert o["workflow_state"] == o["stage"] and _d(o["probability"]) == probability[o["stage"]]
    open_ = [o for o in opps if o["stage"] not in ("won", "lost")]

    def weighted(o):
        return (_d(o["amount"]) * probability[o["stage"]] / 100).quantize(D("0.01"))

    for by, name in (("owner", "forecast_by_owner"), ("team", "forecast_by_team")):
        want = collections.defaultdict(lambda: [D(0), D(0)])
        for o in open_:
            want[(o[by],)][0] += _d(o["amount"])
            want[(o[by],)][1] += weighted(o)
        got, _ = report(s, name)
        assert {k: [_d(v["amount"]), _d(v["weighted"])] for k, v in got.items()} == dict(want) and len(want) >= 3
    by_month = collections.defaultdict(D)
    for o in open_:
        by_month[(f"{_day(o['expected_close']):%Y-%m}",)] += weighted(o)
    got, _ = report(s, "forecast_by_month")
    assert {k: _d(v["weighted"]) for k, v in got.items()} == dict(by_month)

    stage_sum = collections.defaultdict(lambda: [0, D(0)])
    for o in open_:
        stage_sum[(o["stage"],)][0] += 1
        stage_sum[(o["stage"],)][1] += _d(o["amount"])
    got, _ = report(s, "pipeline_by_stage")
    assert {k: [v["deals"], _d(v["amount"])] for k, v in got.items()} == dict(stage_sum)

    closed = [o for o in opps if o["stage"] in ("won", "lost")]
    won = [o for o in closed if o["stage"] == "won"]
    _, res = report(s, "win_rate")
    assert D(str(res.totals["win_rate"])).quantize(D("0.0001")) == (D(len(won)) / len(closed)).quantize(D("0.0001"))
    cycles = [(_day(o["closed_on"]) - _day(o["opened_on"])).days for o in won]
    assert all(c == o["cycle_days"] for c, o in zip(cycles, won))
    _, res = report(s, "sales_cycle")
    assert abs(D(str(res.totals["days"])) - D(str(statistics.mean(cycles)))) < D("0.01")

    acts = collections.Counter(a["owner"] for a in raw(s, "crm.activity"))
    got, _ = report(s, "activities_by_salesperson")
    per_owner = collections.Counter()
    for k, v in got.items():
        per_owner[k[0]] += v["activities"]
    assert per_owner == acts and len([k for k in acts if k]) == 5

    leads = collections.Counter(lead["status"] for lead in raw(s, "crm_sales.lead"))
    got, _ = report(s, "conversion_funnel")
    assert {k[0]: v["leads"] for k, v in got.items()} == dict(leads)

    start, end = today().replace(day=1) - dt.timedelta(days=330), today()
    want = collections.defaultdict(lambda: [D(0), D(0)])
    for t in raw(s, "crm_sales.sales_target"):
        if start.replace(day=1) <= _day(t["period"]) <= end:
            want[(t["salesperson"], f"{_day(t['period']):%Y-%m}")][0] += _d(t["target"])
    for o in won:
        if start.replace(day=1) <= _day(o["closed_on"]) <= end:
            want[(o["owner"], f"{_day(o['closed_on']):%Y-%m}")][1] += _d(o["amount"])
    got = {(r["salesperson"], r["month"]): [r["target"], r["actual"]] for r in target_vs_actual(s, SYSTEM, start, end)}
    assert got == dict(want) and any(v[1] for v in got.values())
    # The demo leaves a discount approval waiting and turns won quotes into contracts and orders.
    assert any(q["needs_approval"] and q["status"] == "draft" for q in raw(s, QUOTE))
    assert len(raw(s, "crm_sales.order")) == len([q for q in raw(s, QUOTE) if q["status"] == "accepted"]) > 0


def test_target_attainment_page_and_panel(crm_app):
    from conftest import login

    s = crm_app.extensions["crmkit"]
    c = crm_app.test_client()
    login(c)
    reps, _ = sales_team(s, SYSTEM)
    rep = reps[0].user_id
    t = s.records.create("crm_sales.sales_target", {"salesperson": rep, "period": "2026-04-01", "target": "200000"}, SYSTEM)
    acc = s.records.create("crm.account", {"name": "达成测试有限公司"}, SYSTEM)
    for amount, closed in (("120000", "2026-04-10"), ("30000", "2026-04-28"), ("99999", "2026-05-02")):
        oid = s.records.create(OPP, {"name": f"达成{amount}", "account": acc, "amount": amount, "expected_close": closed, "owner": rep,
                                     "opened_on": "2026-01-05"}, SYSTEM)
        for step in ("qualify", "propose", "negotiate"):
            s.workflows.transition(OPP, oid, step, SYSTEM)
        s.workflows.transition(OPP, oid, "win", SYSTEM, values={"closed_on": closed})
    assert s.queries.get(OPP, oid, SYSTEM)["cycle_days"] == (dt.date(2026, 5, 2) - dt.date(2026, 1, 5)).days
    html = c.get("/crm/sales/targets?from=2026-04&to=2026-05").get_data(as_text=True)
    april = html.split(f'data-salesperson="{rep}" data-month="2026-04"')[1].split("</tr>")[0]
    assert "陈静" in april and "¥200,000.00" in april and "¥150,000.00" in april and 'data-attainment="0.7500"' in april
    may = html.split(f'data-salesperson="{rep}" data-month="2026-05"')[1].split("</tr>")[0]
    assert "¥0.00" in may and "¥99,999.00" in may and "data-attainment" not in may  # a win without a target: no attainment
    assert 'href="/crm/sales/targets"' in c.get("/home").get_data(as_text=True)  # the sidebar link
    panel = c.get(f"/crm/sales/targets/{t}/panel").get_data(as_text=True)
    assert 'data-actual="150000.00"' in panel
    assert c.get("/crm/sales/targets?from=2026-13").status_code == 400
    assert c.get("/crm/sales/targets?from=2026-05&to=2026-04").status_code == 400


def test_board_moves_follow_the_roles(crm_app):
    """A read-only executive gets no move controls and cannot move by posting; a rep moves their own deal."""
    from auth_support import STAFF_PASSWORD, add_user
    from conftest import login
    s = crm_app.extensions["crmkit"]  # the install created the CRM roles
    rep = add_user(crm_app, "rep_a", role="CRM Sales Rep")
    add_user(crm_app, "exec_a", role="CRM Executive")
    acc = s.records.create("crm.account", {"name": "角色看板有限公司", "owner": rep}, SYSTEM)
    oid = s.records.create(OPP, {"name": "角色商机", "account": acc, "owner": rep}, SYSTEM)
    boss = crm_app.test_client()
    login(boss, "exec_a", STAFF_PASSWORD)
    html = boss.get(f"/e/{OPP}/kanban?by=stage").get_data(as_text=True)
    assert "角色商机" in html and 'class="kanban-move"' not in html
    row = s.queries.get(OPP, oid, SYSTEM)
    resp = boss.post(f"/e/{OPP}/kanban/move", data={"csrf_token": csrf_from(html), "record_id": oid, "row_version": row["row_version"],
                                                     "field": "stage", "value": "qualification"}, headers={"HX-Request": "true"})
    assert resp.status_code == 409 and s.queries.get(OPP, oid, SYSTEM)["stage"] == "prospecting"
    mine = crm_app.test_client()
    login(mine, "rep_a", STAFF_PASSWORD)
    html = mine.get(f"/e/{OPP}/kanban?by=stage").get_data(as_text=True)
    assert 'class="kanban-move"' in html
    resp = mine.post(f"/e/{OPP}/kanban/move", data={"csrf_token": csrf_from(html), "record_id": oid, "row_version": row["row_version"],
                                                    "field": "stage", "value": "qualification"}, headers={"HX-Request": "true"})
    assert resp.status_code == 200 and s.queries.get(OPP, oid, SYSTEM)["stage"] == "qualification"
