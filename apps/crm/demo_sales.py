"""Demo sales team and pipeline: three regional teams with reps and a manager (demo users without a password, so
nobody can sign in as them), twelve months of opportunities moved through the pipeline workflow, quotes (some
with discounts waiting for the manager's approval), contracts and orders, and monthly targets.

Everything goes through the record service and the workflow engine, so stages, probabilities, weighted amounts,
close dates, sales cycles, approvals and line copies are exactly what the app computes for real users.
"""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, replace

from sqlalchemy import select

from crmkit.runtime.actor import Actor
from crmkit.runtime.db import write_transaction
from crmkit.runtime.org.service import OrgService
from crmkit.runtime.org.tables import org_unit
from crmkit.runtime.permissions.admin import ensure_role
from crmkit.runtime.workflow.tables import approval_task

from .demo_agents import demo_user

TEAMS = [("SALES_EAST", "华东销售组", ["chen_jing", "li_na"]), ("SALES_NORTH", "华北销售组", ["wang_qiang", "zhao_lei"]),
         ("SALES_SOUTH", "华南销售组", ["huang_min"])]
NAMES = {"chen_jing": ("陈", "静"), "li_na": ("李", "娜"), "wang_qiang": ("王", "强"), "zhao_lei": ("赵", "磊"), "huang_min": ("黄", "敏"),
         "demo_sales_manager": ("周", "经理")}
MANAGER = "demo_sales_manager"
PATH = ["prospecting", "qualification", "proposal", "negotiation", "won"]
STEP = {"qualification": "qualify", "proposal": "propose", "negotiation": "negotiate", "won": "win"}
LOST_REASONS = ["价格高于竞品", "客户预算冻结", "功能不满足定制需求", "决策人变更，项目搁置"]
OPP = "crm_sales.opportunity"


@dataclass(frozen=True)
class Rep:
    user_id: int
    unit_id: int
    username: str


def _user(conn, username: str, role_id: int, unit_id: int | None) -> int:
    last, first = NAMES[username]
    return demo_user(conn, username, first, last, role_id, unit_id)


def sales_team(services, actor) -> tuple[list[Rep], Actor]:
    org = OrgService(services.engine)
    with services.engine.connect() as conn:
        existing = {r.code: r.id for r in conn.execute(select(org_unit.c.code, org_unit.c.id))}
    root = existing.get("SALES") or org.create_unit(actor, name="销售部", code="SALES", kind="department")
    units = {code: existing.get(code) or org.create_unit(actor, name=name, code=code, kind="department", parent_id=root) for code, name, _ in TEAMS}
    with write_transaction(services.engine) as conn:
        rep_role, mgr_role = ensure_role(conn, "CRM Sales Rep"), ensure_role(conn, "CRM Sales Manager")  # the install made them
        reps = [Rep(_user(conn, u, rep_role, units[code]), units[code], u) for code, _, users in TEAMS for u in users]
        mgr = _user(conn, MANAGER, mgr_role, root)
    return reps, Actor(id=mgr, username=MANAGER, role_ids=frozenset({mgr_role}), org_unit_id=root)


def seed_pipeline(ctx, rnd: random.Random, accounts: list[int], products: list[tuple[int, str]], today: dt.date) -> int:
    services = ctx.services
    reps, manager = sales_team(services, ctx.actor)
    wf = services.workflows
    created = 0
    for _ in range(max(8, ctx.size // 4)):
        rep = rnd.choice(reps)
        as_rep = replace(ctx.actor, org_unit_id=rep.unit_id)  # records belong to the rep's team (the manager's subtree)
        final = rnd.choices(["prospecting", "qualification", "proposal", "negotiation", "won", "lost"], [2, 3, 3, 2, 4, 2])[0]
        opened = today - dt.timedelta(days=rnd.randint(20, 360))
        cycle = rnd.randint(12, 150)
        closed = min(opened + dt.timedelta(days=cycle), today)
        close = closed if final in ("won", "lost") else today + dt.timedelta(days=rnd.randint(5, 120))
        opp = {"name": f"{rnd.choice(['CRM 项目', '客服系统', '门店会员', '年度续约', '渠道管理'])} {opened:%Y-%m}", "account": rnd.choice(accounts),
               "amount": str(rnd.randint(3, 120) * 10000), "expected_close": close.isoformat(), "opened_on": opened.isoformat(),
               "owner": rep.user_id, "team": rep.unit_id, "source": rnd.choice(["web", "phone", "exhibition", "referral", "ads"]),
               "competitors": rnd.sample(["纷享销客", "销售易", "Salesforce", "自研"], rnd.randint(0, 2))}
        oid = ctx.records.create(OPP, opp, as_rep)
        created += 1
        stop = PATH.index(final) if final != "lost" else rnd.randint(0, 3)
        for stage in PATH[1:stop + 1]:
            wf.transition(OPP, oid, STEP[stage], ctx.actor, values={"closed_on": closed.isoformat()} if stage == "won" else None)
        if final == "lost":
            wf.transition(OPP, oid, "lose", ctx.actor, values={"lost_reason": rnd.choice(LOST_REASONS), "closed_on": closed.isoformat()})
        for _ in range(rnd.randint(1, 4)):
            due = opened + dt.timedelta(days=rnd.randint(0, max(1, (close - opened).days)), hours=rnd.randint(9, 17))
            due_at = dt.datetime.combine(due, dt.time(rnd.randint(1, 9)), dt.timezone.utc)
            ctx.records.create("crm.activity", {"subject": rnd.choice(["需求调研会议", "方案演示", "商务报价沟通", "合同条款确认", "回访决策人"]),
                                                "kind": rnd.choice(["call", "meeting", "visit", "task"]), "status": "done" if due < today else "open",
                                                "due_at": due_at.isoformat(), "remind_at": (due_at - dt.timedelta(hours=1)).isoformat(),
                                                "account": opp["account"], "owner": rep.user_id, "regarding_type": "opportunity", "regarding_id": oid}, as_rep)
            created += 1
        if final in ("proposal", "negotiation", "won"):
            created += _quote(ctx, rnd, wf, manager, as_rep, oid, opp, products, final, closed)
    created += _targets(ctx, rnd, reps, today)
    return created


def _quote(ctx, rnd, wf, manager, as_rep, oid, opp, products, final, closed) -> int:
    lines = [{"product": pid, "quantity": str(rnd.randint(1, 5)), "unit_price": price, "discount": str(rnd.choice([0, 5, 10, 15, 20]))}
             for pid, price in rnd.sample(products, 2)]
    qid = ctx.records.create("crm_sales.quote", {"title": f"{opp['name']} 报价", "opportunity": oid, "account": opp["account"], "lines": lines}, as_rep)
    needs = ctx.queries.get("crm_sales.quote", qid, ctx.actor)["needs_approval"]
    if needs:
        req = wf.transition("crm_sales.quote", qid, "request_discount", ctx.actor).pending_approval
        if final == "proposal":  # left waiting in the manager's approvals
            return 1
        with ctx.services.engine.connect() as conn:
            task = conn.execute(select(approval_task.c.id).where(approval_task.c.request_id == req, approval_task.c.assignee_id == manager.id)).scalar_one()
        wf.decide(task, "approve", manager, "折扣在授权范围内")
        wf.transition("crm_sales.quote", qid, "send_approved", ctx.actor)
    else:
        wf.transition("crm_sales.quote", qid, "send", ctx.actor)
    if final != "won":
        return 1
    wf.transition("crm_sales.quote", qid, "accept", ctx.actor)
    tables = ctx.services.records.table_cache.tables(ctx.catalog)
    contracts = tables["crm_sales.contract"]
    with ctx.services.engine.connect() as conn:
        cid = conn.execute(select(contracts.c.id).where(contracts.c.quote == qid)).scalar_one()
    wf.transition("crm_sales.contract", cid, "sign", ctx.actor, values={"signed_on": closed.isoformat()})
    return 3


def _targets(ctx, rnd, reps, today: dt.date) -> int:
    n = 0
    month = today.replace(day=1)
    for back in range(-1, 12):
        y, m = divmod(month.month - 1 - back, 12)
        period = dt.date(month.year + y, m + 1, 1)
        for rep in reps:
            ctx.records.create("crm_sales.sales_target", {"salesperson": rep.user_id, "team": rep.unit_id, "period": period.isoformat(),
                                                          "target": str(rnd.randint(10, 40) * 10000)}, replace(ctx.actor, org_unit_id=rep.unit_id))
            n += 1
    return n
