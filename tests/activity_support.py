"""Shared pieces for the segments, care and activities tests: seeded members with levels, addresses, birthdays and
consents, and small helpers to make segments and activities."""
from __future__ import annotations

import datetime as dt
import json
import random

from sqlalchemy import func, select

from crmkit.apps.membership import activities, segments
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.privacy.consent import grant_consent

CN = dt.timezone(dt.timedelta(hours=8))
CITIES = ["上海市徐汇区漕溪北路 1 号", "北京市朝阳区三里屯路 19 号", "上海市静安区南京西路 1266 号", "广州市天河区天河路 208 号", None]


def seed_members(services, n: int = 60, seed: int = 5) -> tuple[dict, list[dict]]:
    """Levels SILVER/GOLD and ``n`` members with random level, address, birthday (or none) and SMS consent; returns
    (level ids by code, the members as written)."""
    rnd = random.Random(seed)
    levels = {code: services.records.create("membership.level", {"name": name, "code": code, "level_value": v}, SYSTEM)
              for code, name, v in (("SILVER", "普卡", 1), ("GOLD", "金卡", 2))}
    this_month = dt.datetime.now(CN).month  # TODAY() in expressions is the business (China) date
    members = []
    for i in range(n):
        month = this_month if rnd.random() < 0.35 else rnd.randint(1, 12)
        data = {"name": f"会员{i:03d}", "mobile": f"1380000{i:04d}", "joined_on": "2025-01-01", "level": rnd.choice(list(levels.values())),
                "address": rnd.choice(CITIES), "birthday": dt.date(1980 + i % 30, month, 1 + i % 28).isoformat() if rnd.random() < 0.85 else None,
                "email": f"m{i}@example.com" if i % 3 else None}
        data = {k: v for k, v in data.items() if v is not None}
        data["id"] = services.records.create("membership.member", data, SYSTEM)
        data["consent_sms"] = rnd.random() < 0.6
        if data["consent_sms"]:
            grant_consent(services, "membership.member", data["id"], {"channel": "sms", "purpose": "会员关怀", "version": "2026-01"}, SYSTEM)
        members.append(data)
    return levels, members


def make_segment(services, tree: dict, name: str = "分群") -> int:
    return services.records.create(segments.SEGMENT, {"name": name, "filter": json.dumps(tree, ensure_ascii=False)}, SYSTEM)


def make_activity(services, **fields) -> int:
    data = {"title": "会员沙龙", "starts_at": "2026-05-10T14:00:00+08:00", "points": 50, "follow_up_days": 30, **fields}
    return services.records.create(activities.ACTIVITY, data, SYSTEM)


def count_rows(services, entity: str, **where) -> int:
    t = services.records.table_cache.tables(services.store.catalog())[entity]
    with services.engine.connect() as c:
        q = select(func.count()).select_from(t).where(t.c.deleted_at.is_(None))
        for k, v in where.items():
            q = q.where(t.c[k] == v)
        return c.execute(q).scalar_one()
