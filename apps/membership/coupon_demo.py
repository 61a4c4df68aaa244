"""Demo coupons: three templates, the catalogue's coupon reward wired to one, and coupons issued to (and some used
by) the demo members. Runs after the main demo seeder; everything goes through the record service."""
from __future__ import annotations

import datetime as dt
import random

from . import coupons

TEMPLATES = [
    {"name": "满 100 减 15", "code": "M100J15", "kind": "amount", "amount": "15", "min_spend": "100", "validity": "days", "valid_days": 30,
     "description": "单笔消费满 100 元可用，不与其他优惠同享"},
    {"name": "生日八五折", "code": "BDAY85", "kind": "rate", "discount_rate": "15", "max_discount": "100", "min_spend": "0", "validity": "days",
     "valid_days": 31, "description": "生日当月全场 85 折，最高减 100 元"},
    {"name": "上海门店新店礼 50 元", "code": "SHNEW50", "kind": "amount", "amount": "50", "min_spend": "300", "validity": "days", "valid_days": 60,
     "store_codes": ["SH-001", "SH-002"], "description": "仅限上海门店使用"},
]


def seed_coupons(ctx) -> int:
    if ctx.queries.list(coupons.TEMPLATE, ctx.actor, limit=1, count="none", labels=False).rows:
        return 0
    rnd = random.Random(7)
    ids = [ctx.records.create(coupons.TEMPLATE, t, ctx.actor) for t in TEMPLATES]
    created = len(ids)
    reward = ctx.queries.list("membership.reward_item", ctx.actor, filter={"field": "code", "op": "eq", "value": "CPN15"}, limit=1, labels=False,
                              count="none").rows
    if reward:
        ctx.records.update("membership.reward_item", reward[0]["id"], {"coupon_template": ids[0]}, ctx.actor, expected_version=reward[0]["row_version"])
    members = [r["id"] for r in ctx.queries.list(coupons.MEMBER, ctx.actor, limit=min(ctx.size, 60), labels=False, count="none").rows]
    now = dt.datetime.now(dt.timezone.utc)

    for m in members:
        tpl = rnd.choice(ids)
        issued = now - dt.timedelta(days=rnd.randint(0, 20))
        data = {"code": coupons.new_code(), "member": m, "template": tpl, "status": "issued", "source": rnd.choice(["manual", "segment", "automation"]),
                "issued_at": issued.isoformat(), "valid_from": issued.isoformat(), "valid_until": (issued + dt.timedelta(days=30)).isoformat()}
        if rnd.random() < 0.35:
            data.update(status="used", used_at=(issued + dt.timedelta(days=1)).isoformat(), order_amount="188.00", discount="15.00")
        ctx.records.create(coupons.COUPON, data, ctx.actor)
        created += 1
    return created
