"""Demo segments, a care campaign and activities with invitations, registrations, check-ins, points and evaluations,
so the activity statistics report shows something on first run. Everything goes through the same functions staff
use (check-in by card or mobile, the ledger for points)."""
from __future__ import annotations

import datetime as dt
import json
import random

from . import activities, segments

CN = dt.timezone(dt.timedelta(hours=8))
PLANS = [  # title, kind, days from today, budget, cost, points, attendees out of invited
    ("春季新品品鉴会", "tasting", -75, "8000", "7420.50", 50, 0.7),
    ("亲子烘焙日", "family", -40, "5000", "4680", 80, 0.8),
    ("金卡会员答谢沙龙", "salon", -12, "12000", "11250", 100, 0.6),
    ("年终会员嘉年华", "other", 20, "30000", None, 100, 0.0),
]


def seed_activities(ctx) -> int:
    if ctx.services is None or ctx.queries.list(activities.ACTIVITY, ctx.actor, limit=1, count="none", labels=False).rows:
        return 0
    services, actor, rnd = ctx.services, ctx.actor, random.Random(99)
    levels = {r["code"]: r["id"] for r in ctx.queries.list("membership.level", actor, fields=["code"], limit=10, labels=False, count="none").rows}
    stores = [r["id"] for r in ctx.queries.list("membership.store", actor, fields=["id"], limit=10, labels=False, count="none").rows]
    gold = levels.get("GOLD")
    created = 0
    seg_sh = ctx.records.create(segments.SEGMENT, {
        "name": "上海金卡本月生日会员", "description": "金卡、地址在上海、本月生日",
        "filter": json.dumps({"and": [{"field": "level", "op": "eq", "value": gold}, {"field": "address", "op": "contains", "value": "上海"},
                                      {"field": "birthday_this_month", "op": "eq", "value": True}]}, ensure_ascii=False)}, actor)
    seg_gold = ctx.records.create(segments.SEGMENT, {"name": "金卡会员", "filter": json.dumps({"field": "level", "op": "eq", "value": gold})}, actor)
    seg_sms = ctx.records.create(segments.SEGMENT, {"name": "同意短信的会员", "filter": json.dumps({"field": "consent_sms", "op": "eq", "value": True})}, actor)
    ctx.records.create("membership.care", {"name": "本月生日关怀", "segment": seg_sh, "channel": "sms",
                                           "body": "{{ name }}您好，祝您生日快乐！本月到店可领取生日礼包。"}, actor)
    created += 4
    members = [r for r in ctx.queries.list("membership.member", actor, filter={"field": "status", "op": "eq", "value": "active"},
                                           fields=["card_no", "mobile"], sort=["id"], limit=200, labels=False,
                                           count="none").rows]
    today = dt.datetime.now(CN).replace(hour=14, minute=0, second=0, microsecond=0)
    for n, (title, kind, days, budget, cost, points, share) in enumerate(PLANS):
        starts = today + dt.timedelta(days=days)
        data = {"title": title, "kind": kind, "status": "closed" if days < 0 else "open", "starts_at": starts.isoformat(),
                "ends_at": (starts + dt.timedelta(hours=3)).isoformat(), "store": stores[n % len(stores)] if stores else None,
                "place": "门店活动区", "budget": budget, "cost": cost, "points": points, "follow_up_days": 30,
                "segment": seg_gold if n == 2 else seg_sms, "channel": "sms", "invitation": "{{ name }}您好，诚邀您参加“{{ title }}”，时间 {{ starts_at }}。",
                "description": f"{title}：会员专享活动。"}
        aid = ctx.records.create(activities.ACTIVITY, {k: v for k, v in data.items() if v is not None}, actor)
        created += 1
        guests = rnd.sample(members, min(len(members), 20 + 5 * n))
        for g in guests:
            activities.register(services, aid, g["id"], actor)
            created += 1
        if days < 0:
            for g in guests[: int(len(guests) * share)]:
                by_card = rnd.random() < 0.6
                activities.check_in(services, aid, actor, card_no=g["card_no"] if by_card else None, mobile=None if by_card else g["mobile"],
                                    now=starts + dt.timedelta(minutes=rnd.randint(-20, 40)))
            activities.award_points(services, aid, actor)
            activities.evaluate(services, aid, actor)
    return created
