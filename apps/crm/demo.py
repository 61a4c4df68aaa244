"""Demo data for the CRM templates: zh-CN companies, contacts, twelve months of leads, opportunities, activities
and tickets, all written through the record service (so duplicate checks, SLA fields and totals apply); the sales
team, pipeline, quotes, contracts, orders and targets are in ``demo_sales``."""
from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

from faker import Faker

from crmkit.runtime.errors import ValidationFailed

from .demo_agents import demo_agents
from .demo_sales import seed_pipeline

SHANGHAI = ZoneInfo("Asia/Shanghai")

SEED = 20261126
PRODUCTS = [("CRM-STD", "CRM 标准版（年）", "software", "套", "29800"), ("CRM-PRO", "CRM 专业版（年）", "software", "套", "59800"),
            ("IMPL-D", "实施服务（人天）", "service", "人天", "2500"), ("TRAIN", "培训服务", "service", "场", "8000"),
            ("SCAN-01", "扫码枪", "hardware", "台", "680")]
REGIONS = {"east": ["上海市", "江苏省", "浙江省"], "north": ["北京市", "天津市", "河北省"], "south": ["广东省", "福建省"], "central": ["湖北省", "湖南省"],
           "southwest": ["四川省", "重庆市"]}
SUBJECTS = ["发票抬头需要修改", "订单物流三天未更新", "设备开机异常", "账号无法登录", "退款进度查询", "产品包装破损", "客服态度问题投诉", "功能使用咨询"]


def _ago(rnd, today, max_days=365):
    return today - dt.timedelta(days=rnd.randint(0, max_days), hours=rnd.randint(0, 23), minutes=rnd.randint(0, 59))


def _empty(ctx, key) -> bool:
    return not ctx.queries.list(key, ctx.actor, limit=1, count="none", labels=False).rows


def seed_customers(ctx) -> int:
    if not _empty(ctx, "crm.account"):
        return 0
    fake, rnd = Faker("zh_CN"), random.Random(SEED)
    Faker.seed(SEED)
    created, parents = 0, []
    for i in range(max(10, ctx.size // 5)):
        region = rnd.choice(list(REGIONS))
        province = rnd.choice(REGIONS[region])
        data = {"name": fake.company(), "region": region, "industry": rnd.choice(["manufacturing", "retail", "it", "finance", "healthcare", "education", "logistics"]),
                "grade": rnd.choices(["a", "b", "c"], [2, 5, 3])[0], "phone": fake.phone_number(), "province": province, "city": fake.city(),
                "district": fake.district() + "区", "address": fake.street_address(), "tags": rnd.sample(["战略客户", "老客户", "渠道", "政府"], rnd.randint(0, 2))}
        if parents and i % 7 == 0:
            data["parent"] = rnd.choice(parents)
        try:
            aid = ctx.records.create("crm.account", data, ctx.actor)
        except ValidationFailed:  # Faker repeats a name now and then; the duplicate check refuses it
            continue
        parents.append(aid)
        created += 1
        for j in range(rnd.randint(1, 3)):
            try:
                ctx.records.create("crm.contact", {"name": fake.name(), "account": aid, "title": rnd.choice(["总经理", "采购经理", "IT 主管", "财务总监", "运营经理"]),
                                                   "mobile": fake.phone_number(), "email": fake.email(), "is_primary": j == 0}, ctx.actor)
                created += 1
            except ValidationFailed:
                pass
    return created


def seed_sales(ctx) -> int:
    if not _empty(ctx, "crm_sales.lead"):
        return 0
    fake, rnd = Faker("zh_CN"), random.Random(SEED + 1)
    Faker.seed(SEED + 1)
    today = dt.datetime.now(dt.timezone.utc)
    created = 0
    products = []
    for code, name, cat, unit, price in PRODUCTS:
        products.append((ctx.records.create("crm_sales.product", {"code": code, "name": name, "category": cat, "unit": unit, "list_price": price}, ctx.actor), price))
        created += 1
    accounts = [r["id"] for r in ctx.queries.list("crm.account", ctx.actor, limit=200, count="none", labels=False).rows]
    for _ in range(max(10, ctx.size // 2)):
        region = rnd.choice(list(REGIONS))
        status = rnd.choices(["new", "contacted", "qualified", "disqualified"], [3, 4, 2, 1])[0]
        try:
            lid = ctx.records.create("crm_sales.lead", {
                "name": fake.name(), "company": fake.company(), "title": rnd.choice(["经理", "总监", "主管", "专员"]), "mobile": fake.phone_number(),
                "email": fake.email(), "source": rnd.choice(["web", "phone", "exhibition", "referral", "ads"]), "status": status, "region": region,
                "province": rnd.choice(REGIONS[region]), "city": fake.city(), "budget": str(rnd.randint(1, 50) * 10000),
                "last_followed_at": _ago(rnd, today).isoformat(), "description": rnd.choice(["希望统一管理全国门店会员", "需要工单系统替代邮件", "销售过程不透明，想上 CRM"])}, ctx.actor)
        except ValidationFailed:
            continue
        created += 1
        ctx.records.create("crm.activity", {"subject": rnd.choice(["首次电话沟通", "发送产品资料", "上门演示"]), "kind": rnd.choice(["call", "visit", "meeting"]),
                                            "status": "done", "due_at": _ago(rnd, today).isoformat(), "regarding_type": "lead", "regarding_id": lid}, ctx.actor)
        created += 1
    if accounts:
        created += seed_pipeline(ctx, rnd, accounts, products, today.astimezone(SHANGHAI).date())
    return created


SLA = [("urgent", 30, 4 * 60), ("high", 60, 8 * 60), ("normal", 4 * 60, 3 * 8 * 60), ("low", 8 * 60, 5 * 8 * 60)]


def seed_service(ctx) -> int:
    if not _empty(ctx, "crm_service.sla_policy"):
        return 0
    fake, rnd = Faker("zh_CN"), random.Random(SEED + 2)
    Faker.seed(SEED + 2)
    created = 0
    for prio, first, resolve in SLA:
        ctx.records.create("crm_service.sla_policy", {"name": f"{prio} 标准", "priority": prio, "first_response_minutes": first, "resolution_minutes": resolve}, ctx.actor)
        created += 1
    ctx.records.create("crm_service.sla_policy", {"name": "紧急投诉", "priority": "urgent", "category": "product", "first_response_minutes": 15, "resolution_minutes": 120}, ctx.actor)
    kb = [ctx.records.create("crm_service.kb_article", {"title": t, "category": c, "body": b, "published": True}, ctx.actor) for t, c, b in [
        ("如何申请开具增值税专用发票", "billing", "在“我的订单”中选择订单，点击“申请发票”，填写税号与开户行信息。"),
        ("物流信息长时间未更新怎么办", "delivery", "先核对运单号；超过 72 小时未更新请联系客服登记催件。"),
        ("忘记密码如何找回", "account", "在登录页点击“忘记密码”，通过绑定手机号接收验证码重置。")]]
    for title, short, body in [("问候", "hi", "您好，我是客服专员，很高兴为您服务。"), ("致歉", "sorry", "非常抱歉给您带来不便，我们会尽快处理。"), ("结束", "bye", "请问还有其他可以帮您的吗？祝您生活愉快！")]:
        ctx.records.create("crm_service.canned_response", {"title": title, "shortcut": short, "body": body}, ctx.actor)
    created += 6
    accounts = [r["id"] for r in ctx.queries.list("crm.account", ctx.actor, limit=200, count="none", labels=False).rows]
    agents = demo_agents(ctx.services) if ctx.services is not None else []
    today = dt.datetime.now(dt.timezone.utc)
    for i in range(max(10, ctx.size // 2)):
        kind = rnd.choices(["request", "incident", "complaint"], [6, 3, 1])[0]
        opened = _ago(rnd, today)
        status = rnd.choices(["new", "open", "waiting_on_customer", "resolved", "closed"], [1, 2, 1, 3, 3])[0] if opened < today - dt.timedelta(days=3) else "open"
        data = {"subject": rnd.choice(SUBJECTS), "kind": kind, "category": rnd.choice(["billing", "delivery", "product", "account", "other"]),
                "priority": rnd.choices(["urgent", "high", "normal", "low"], [1, 2, 5, 2])[0], "channel": rnd.choice(["phone", "email", "web", "wechat"]),
                "status": status, "account": rnd.choice(accounts) if accounts else None, "requester_name": fake.name(), "requester_mobile": fake.phone_number(),
                "order_ref": f"SO{opened:%Y%m%d}{i:04d}", "opened_at": opened.isoformat(), "description": "客户来电反映问题，详见标题。"}
        if status in ("resolved", "closed"):
            data["resolved_at"] = (opened + dt.timedelta(hours=rnd.randint(1, 72))).isoformat()
            data["first_responded_at"] = (opened + dt.timedelta(minutes=rnd.randint(5, 240))).isoformat()
            data["kb_article"] = rnd.choice(kb)
            if kind == "complaint":
                data.update(root_cause="仓库发货前未复核商品外观", follow_up="已补发并对仓库增加发货前质检环节")
            if rnd.random() < 0.7:  # most customers answer the survey
                data["satisfaction"] = rnd.choices([1, 2, 3, 4, 5], [1, 1, 3, 6, 9] if kind != "complaint" else [3, 3, 3, 2, 1])[0]
        elif status in ("open", "waiting_on_customer"):
            data["first_responded_at"] = (opened + dt.timedelta(minutes=rnd.randint(5, 480))).isoformat()
        if agents and (status != "new" or rnd.random() < 0.5):
            data["assignee"] = rnd.choices(agents, [4, 3, 2, 1][:len(agents)])[0]  # an uneven load, as in real teams
        ctx.records.create("crm_service.ticket", data, ctx.actor)
        created += 1
    return created
