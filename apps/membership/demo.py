"""Demo data: four levels, realistic zh-CN members, a points plan, stores, a reward catalogue and orders —
all written through the record service, so the orders post their points through the order listener."""
from __future__ import annotations

import datetime as dt
import decimal
import random

from faker import Faker

LEVELS = [
    {"name": "普卡会员", "code": "SILVER", "level_value": 1, "upgrade_points": 0, "discount": "100", "color": "silver", "benefits": "生日双倍积分；会员日专享价"},
    {"name": "金卡会员", "code": "GOLD", "level_value": 2, "upgrade_points": 2000, "discount": "95", "color": "gold", "benefits": "全场 95 折；免费停车 2 小时；生日礼包"},
    {"name": "铂金会员", "code": "PLATINUM", "level_value": 3, "upgrade_points": 8000, "discount": "90", "color": "platinum", "benefits": "全场 9 折；专属客服；新品优先体验"},
    {"name": "钻石会员", "code": "DIAMOND", "level_value": 4, "upgrade_points": 20000, "discount": "85", "color": "diamond", "benefits": "全场 85 折；私人顾问；年度答谢晚宴"},
]
TAGS = ["高价值", "新客", "沉睡", "生日月", "团购", "亲子", "商务", "学生"]


def seed_demo(ctx) -> int:
    """Create levels and ``ctx.size`` members; returns the number of records created.

    Demo data goes into an empty app only, so installing again with demo data adds nothing."""
    if ctx.queries.list("membership.level", ctx.actor, limit=1, count="none", labels=False).rows:
        return 0
    fake = Faker("zh_CN")
    Faker.seed(20261125)
    rnd = random.Random(20261125)
    level_ids = [ctx.records.create("membership.level", lv, ctx.actor) for lv in LEVELS]
    weights = [60, 25, 11, 4]
    used_mobiles: set[str] = set()
    member_ids: list[int] = []
    created = len(level_ids)
    today = dt.date.today()
    for _ in range(ctx.size):
        mobile = fake.phone_number()
        while mobile in used_mobiles:
            mobile = fake.phone_number()
        used_mobiles.add(mobile)
        with_id = rnd.random() < 0.7
        data = {
            "name": fake.name(),
            "mobile": mobile,
            "email": fake.email() if rnd.random() < 0.6 else None,
            "level": rnd.choices(level_ids, weights)[0],
            "joined_on": (today - dt.timedelta(days=rnd.randint(0, 3 * 365))).isoformat(),
            "join_channel": rnd.choice(["store", "store", "online", "purchase", "referral"]),
            "tags": rnd.sample(TAGS, rnd.randint(0, 3)),
            "consent_sms": rnd.random() < 0.7,
            "consent_email": rnd.random() < 0.4,
            "consent_wechat": rnd.random() < 0.8,
            "total_spent": str(decimal.Decimal(rnd.randint(0, 5_000_000)) / 100),
            "address": fake.address()[:200] if rnd.random() < 0.5 else None,
        }
        if with_id:
            data["id_number"] = fake.ssn(min_age=18, max_age=80)
        else:
            data["gender"] = rnd.choice(["male", "female"])
            data["birthday"] = fake.date_of_birth(minimum_age=18, maximum_age=80).isoformat()
        member_ids.append(ctx.records.create("membership.member", data, ctx.actor))
        created += 1
    return created + seed_points(ctx, rnd, member_ids, level_ids)


STORES = [("SH-001", "上海南京西路店"), ("SH-002", "上海徐家汇店"), ("BJ-001", "北京三里屯店"), ("GZ-001", "广州天河店")]
REWARDS = [
    {"name": "品牌保温杯", "code": "CUP", "kind": "goods", "points": 800, "stock": 50, "per_member_limit": 2},
    {"name": "定制帆布包", "code": "BAG", "kind": "goods", "points": 500, "stock": 120},
    {"name": "20 元现金券", "code": "CASH20", "kind": "cash", "points": 2000, "cash_amount": "20"},
    {"name": "满 100 减 15 优惠券", "code": "CPN15", "kind": "coupon", "points": 300, "per_member_limit": 5},
]


def seed_points(ctx, rnd: random.Random, member_ids: list[int], level_ids: list[int]) -> int:
    """A plan for this year with consumption and purchase items, stores, rewards, and a few orders per member."""
    today = dt.date.today()
    plan = ctx.records.create("membership.points_plan", {
        "name": f"{today.year} 年度积分计划", "code": f"P{today.year}", "starts_on": f"{today.year}-01-01", "ends_on": f"{today.year}-12-31",
        "point_value": "0.01", "expiry_rule": "months_after_earn", "expiry_months": 12, "carry_over_rule": "min_balance", "carry_over_min": 1000,
        "upgrade_per_yuan": "1", "approval_threshold": 1000}, ctx.actor)
    multipliers = [{"level": lv, "multiplier": m} for lv, m in zip(level_ids, ["1", "1.2", "1.5", "2"])]
    ctx.records.create("membership.point_item", {
        "plan": plan, "name": "消费积分", "kind": "consumption", "per_yuan": "1", "rounding": "floor", "cap_per_day": 20000,
        "level_multipliers": multipliers,
        "bonus_periods": [{"starts_on": f"{today.year}-11-11", "ends_on": f"{today.year}-11-11", "multiplier": "2"}]}, ctx.actor)
    ctx.records.create("membership.point_item", {"plan": plan, "name": "购卡积分", "kind": "purchase", "per_yuan": "2", "cap_per_order": 5000}, ctx.actor)
    ctx.records.create("membership.point_item", {"plan": plan, "name": "线上入会礼", "kind": "online_join", "fixed_points": 100}, ctx.actor)
    store_ids = [ctx.records.create("membership.store", {"code": code, "name": name}, ctx.actor) for code, name in STORES]
    for r in REWARDS:
        ctx.records.create("membership.reward_item", r, ctx.actor)
    created = 4 + len(store_ids) + len(REWARDS)
    start = dt.datetime.combine(today.replace(month=1, day=1), dt.time(10), dt.timezone(dt.timedelta(hours=8)))
    span = max((today - start.date()).days, 1)
    for member in member_ids[: max(len(member_ids) // 2, 1)]:
        for _ in range(rnd.randint(1, 3)):
            status = rnd.choices(["paid", "pending"], [9, 1])[0]
            amount = decimal.Decimal(rnd.randint(2000, 200000)) / 100
            data = {"member": member, "store": rnd.choice(store_ids), "kind": "consumption", "amount": str(amount), "payment_status": status,
                    "ordered_at": (start + dt.timedelta(days=rnd.randint(0, span - 1), minutes=rnd.randint(0, 600))).isoformat()}
            if status == "paid" and rnd.random() < 0.08:
                data["refunded_amount"] = str((amount * decimal.Decimal(rnd.choice([25, 50, 100])) / 100).quantize(decimal.Decimal("0.01")))
            ctx.records.create("membership.order", data, ctx.actor)
            created += 1
    return created
