"""Demo data: four levels and realistic zh-CN members, written through the record service."""
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
            "status": rnd.choices(["active", "lost", "cancelled"], [92, 5, 3])[0],
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
        ctx.records.create("membership.member", data, ctx.actor)
        created += 1
    return created
