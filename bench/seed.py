"""Fast seeding for benchmarks: rows built in Python and inserted with executemany.

The measured paths are the reads; seeding 1M rows through the record service would
take longer than the benchmark itself. The create benchmark measures that path.
"""
from __future__ import annotations

import datetime as dt
import decimal
import random


from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.db import write_transaction
from crmkit.runtime.storage import platform_tables as pt

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰萍红娥梅琳晨曦子涵浩宇欣怡思远嘉怡梓萱雨桐"
TAGS = ["高价值", "新客", "沉睡", "生日月", "团购", "亲子", "商务", "学生"]


def member_rows(n: int, start: int, level_ids: list[int], seed: int = 1) -> list[dict]:
    rnd = random.Random(seed)
    now = dt.datetime.now(dt.timezone.utc)
    today = dt.date.today()
    rows = []
    for i in range(start, start + n):
        rows.append({
            "card_no": f"VIP{i:08d}", "name": rnd.choice(SURNAMES) + "".join(rnd.sample(GIVEN, rnd.randint(1, 2))),
            "gender": rnd.choice(["male", "female"]), "birthday": today - dt.timedelta(days=rnd.randint(18 * 365, 80 * 365)),
            "mobile": f"1{rnd.choice('3456789')}{i:09d}"[:11], "email": None, "id_number": None,
            "level": rnd.choice(level_ids), "joined_on": today - dt.timedelta(days=rnd.randint(0, 5 * 365)),
            "join_channel": rnd.choice(["store", "online", "purchase", "referral"]),
            "status": rnd.choices(["active", "lost", "cancelled"], [92, 5, 3])[0], "tags": rnd.sample(TAGS, rnd.randint(0, 3)),
            "consent_sms": rnd.random() < 0.7, "consent_email": rnd.random() < 0.4, "consent_wechat": rnd.random() < 0.8,
            "total_spent": decimal.Decimal(rnd.randint(0, 5_000_000)) / 100, "address": None, "notes": None,
            "created_at": now, "updated_at": now, "row_version": 1,
        })
    return rows


def seed_members(services, n: int, batch: int = 10_000) -> None:
    from crmkit.apps.membership.demo import LEVELS

    level_ids = [services.records.create("membership.level", lv, SYSTEM) for lv in LEVELS]
    catalog = services.store.catalog()
    table = services.records.table_cache.tables(catalog)["membership.member"]
    for start in range(1, n + 1, batch):
        rows = member_rows(min(batch, n - start + 1), start, level_ids, seed=start)
        with write_transaction(services.engine) as conn:
            conn.execute(table.insert(), rows)
    field = catalog.entity("membership.member").field("card_no")
    with write_transaction(services.engine) as conn:
        conn.execute(pt.sequence.insert().values(key=f"membership.member.{field.id}", value=n))
        conn.exec_driver_sql("ANALYZE")
