"""Demo data: 30 partner merchants with offers, six months of counter redemptions and purchases (posted to the
points ledger like real ones), reviews, a communication log, and last month settled.

Records go through the record service; redemptions through ``redeem_offer`` (the counter's own path), with the
clock set back to the day of each use. Workflow states are written through the restricted transition write path
(the demo stands in for the alliance manager's approvals)."""
from __future__ import annotations

import datetime as dt
import decimal
import random
from types import SimpleNamespace

from crmkit.apps.membership.ledger import InsufficientPoints

from .errors import OfferRefused
from .offers import redeem_offer
from .settlement import compute_totals

D = decimal.Decimal
MERCHANTS = [
    ("星巴克（南京西路店）", "dining", "east", "上海"), ("海底捞（徐家汇店）", "dining", "east", "上海"), ("万达影城（五角场）", "entertainment", "east", "上海"),
    ("途虎养车（闵行店）", "car", "east", "上海"), ("屈臣氏（人民广场）", "beauty", "east", "上海"), ("西西弗书店", "retail", "east", "杭州"),
    ("外婆家（西湖店）", "dining", "east", "杭州"), ("喜茶（湖滨银泰）", "dining", "east", "杭州"), ("CGV影城（三里屯）", "entertainment", "north", "北京"),
    ("全聚德（前门店）", "dining", "north", "北京"), ("京东汽车服务（望京）", "car", "north", "北京"), ("中国书店（琉璃厂）", "retail", "north", "北京"),
    ("美年大健康（朝阳）", "beauty", "north", "北京"), ("狗不理（天津总店）", "dining", "north", "天津"), ("点都德（天河店）", "dining", "south", "广州"),
    ("广州大剧院", "entertainment", "south", "广州"), ("车享家（番禺）", "car", "south", "广州"), ("奈雪的茶（深圳湾）", "dining", "south", "深圳"),
    ("华侨城欢乐谷", "entertainment", "south", "深圳"), ("名创优品（海岸城）", "retail", "south", "深圳"), ("丝芙兰（万象城）", "beauty", "south", "深圳"),
    ("小龙坎火锅（春熙路）", "dining", "west", "成都"), ("成都大熊猫基地文创", "retail", "west", "成都"), ("太平洋影城（IFS）", "entertainment", "west", "成都"),
    ("德克士（解放碑）", "dining", "west", "重庆"), ("一汽大众4S店（渝北）", "car", "west", "重庆"), ("悦榕庄SPA", "beauty", "west", "昆明"),
    ("西安易俗社", "entertainment", "west", "西安"), ("钟书阁（泰晤士小镇）", "retail", "east", "上海"), ("洗车侠（苏州园区）", "car", "east", "苏州"),
]
REVIEWS = ["服务热情，优惠到位", "核销很快，体验不错", "排队有点久", "环境好，会再来", "店员不太熟悉会员优惠", "性价比高"]


def seed_demo(ctx) -> int:
    if ctx.queries.list("alliance.merchant", ctx.actor, limit=1, count="none", labels=False).rows:
        return 0
    services = SimpleNamespace(records=ctx.records, queries=ctx.queries, store=ctx.records.store, engine=ctx.records.engine)
    rnd = random.Random(20261126)
    today = dt.date.today()
    levels = [r["id"] for r in ctx.queries.list("membership.level", ctx.actor, limit=10, count="none", labels=False).rows]
    members = [r["id"] for r in ctx.queries.list("membership.member", ctx.actor, limit=200, count="none", labels=False,
                                                 filter={"field": "status", "op": "eq", "value": "active"}).rows]
    created = 0
    start = today.replace(day=1) - dt.timedelta(days=183)
    merchants: list[tuple[int, str]] = []
    for i, (name, category, region, city) in enumerate(MERCHANTS, start=1):
        mid = ctx.records.create("alliance.merchant", {
            "name": name, "code": f"M{i:03d}", "category": category, "region": region, "city": city, "address": f"{city}市示范路 {i * 7} 号",
            "phone": f"1380021{i:04d}", "licence_no": f"91310000MA1K{i:06d}", "intent": rnd.choice(["high", "high", "medium", "low"]),
            "fee_rate": str(rnd.choice([2, 3, 5])), "point_value": "0.01",
            "contacts": [{"name": f"联系人{i}", "title": "店长", "mobile": f"139{i:08d}"}]}, ctx.actor)
        created += 1
        state = "formal" if i <= 24 else ("applying" if i <= 28 else "terminated")
        fields = {"contract_start": start.isoformat(), "contract_end": (today + dt.timedelta(days=20 if i % 6 == 0 else 365)).isoformat()}
        if state == "terminated":
            fields = {"termination_reason": "合作期间客诉较多，双方协商终止"}
        if state != "applying":
            _set_state(services, mid, state, fields, ctx.actor)
        merchants.append((mid, state))
        for offer in _offers(i, rnd, levels, start, today):
            ctx.records.create("alliance.offer", {"merchant": mid, **offer}, ctx.actor)
            created += 1
    created += _usage(ctx, services, rnd, merchants, members, start, today)
    return created + _joint_activities(ctx, rnd, [m for m, state in merchants if state == "formal"])


def _joint_activities(ctx, rnd: random.Random, formal: list[int]) -> int:
    """联合活动: three formal merchants on each demo membership activity, with their results once it is over."""
    created = 0
    acts = ctx.queries.list("membership.activity", ctx.actor, fields=["status"], sort=["id"], limit=10, count="none", labels=False).rows
    for act in acts:
        for mid in rnd.sample(formal, min(3, len(formal))):
            done = act["status"] == "closed"
            ctx.records.create("alliance.activity_merchant", {
                "activity": act["id"], "merchant": mid, "status": "participating" if done or rnd.random() < 0.5 else "invited",
                "contribution": str(rnd.choice([500, 800, 1000])), **({"members_served": rnd.randint(8, 30), "redemptions": rnd.randint(3, 20)}
                                                                      if done else {})}, ctx.actor)
            created += 1
    return created


def _offers(i: int, rnd: random.Random, levels: list[int], start: dt.date, today: dt.date) -> list[dict]:
    base = {"valid_from": start.isoformat(), "valid_until": (today + dt.timedelta(days=180)).isoformat()}
    out = [{"name": "会员专享 9 折", "kind": "discount", "discount_rate": "10", "funded_by": "merchant", "per_member_limit": 20, **base},
           {"name": "800 积分兑换 30 元代金券", "kind": "points", "points_cost": 800, "amount_off": "30", "funded_by": "club", "per_member_limit": 3,
            "total_limit": 200, **base}]
    if i % 3 == 0:
        out.append({"name": "金卡以上立减 20 元", "kind": "amount", "amount_off": "20", "funded_by": "club", "total_limit": 500,
                    "levels": [{"level": lv} for lv in levels[1:]], "blackouts": [{"starts_on": f"{today.year}-10-01", "ends_on": f"{today.year}-10-07",
                                                                                  "note": "国庆黄金周"}], **base})
    return out


def _set_state(services, record_id: int, state: str, fields: dict, actor) -> None:
    from crmkit.runtime.db import write_transaction

    fields = {**fields, "status": state}
    with write_transaction(services.engine) as conn:
        current = services.records.lock_for_transition(conn, "alliance.merchant", record_id)
        services.records.write_transition(conn, "alliance.merchant", current, state, fields, tuple(fields), actor)


def _usage(ctx, services, rnd, merchants, members, start, today) -> int:
    if not members:
        return 0
    created = 0
    formal = [m for m, s in merchants if s == "formal"]
    offers = {m: ctx.queries.list("alliance.offer", ctx.actor, filter={"field": "merchant", "op": "eq", "value": m}, limit=10, count="none",
                                  labels=False).rows for m in formal}
    span = (today - start).days
    n = 0
    redeemed: list[tuple[int, int, int]] = []
    for _ in range(360):
        n += 1
        merchant = rnd.choice(formal)
        offer = rnd.choice(offers[merchant])
        member = rnd.choice(members)
        when = dt.datetime.combine(start + dt.timedelta(days=rnd.randint(0, span)), dt.time(rnd.randint(2, 12), rnd.randint(0, 59)), dt.timezone.utc)
        when = min(when, dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
        bill = D(rnd.randint(3000, 60000)) / 100
        try:
            res = redeem_offer(services, merchant_id=merchant, offer_id=offer["id"], member_id=member, actor=ctx.actor, key=f"demo-{n}", bill=bill,
                               now=when)
        except (OfferRefused, InsufficientPoints):
            continue
        redeemed.append((res.redemption_id, merchant, member))
        created += 1
        if rnd.random() < 0.6:
            ctx.records.create("alliance.purchase", {"ref": f"P-demo-{n}", "merchant": merchant, "member": member, "amount": str(bill),
                                                     "purchased_at": when.isoformat()}, ctx.actor)
            created += 1
    for rid, merchant, member in redeemed[::4]:
        ctx.records.create("alliance.review", {"merchant": merchant, "redemption": rid, "member": member, "score": rnd.choice([3, 4, 4, 5, 5, 2]),
                                               "comment": rnd.choice(REVIEWS), "reviewed_on": today.isoformat()}, ctx.actor)
        created += 1
    for merchant in formal[:10]:
        ctx.records.create("alliance.contact_log", {"merchant": merchant, "kind": rnd.choice(["visit", "call", "negotiation"]),
                                                    "happened_on": (today - dt.timedelta(days=rnd.randint(1, 60))).isoformat(),
                                                    "summary": "季度合作回顾", "follow_up_on": (today + dt.timedelta(days=7)).isoformat(),
                                                    "follow_up_task": "确认下季度联合活动方案"}, ctx.actor)
        created += 1
    ctx.records.create("alliance.complaint", {"merchant": formal[1], "subject": "核销后未享受折扣", "received_on": today.isoformat(),
                                              "details": "会员反映店员未按 9 折结算"}, ctx.actor)
    # last month: a statement per merchant, confirmed and settled
    last_end = today.replace(day=1) - dt.timedelta(days=1)
    last_start = last_end.replace(day=1)
    for merchant in formal:
        totals = compute_totals(services, merchant, last_start, last_end)
        code = ctx.queries.get("alliance.merchant", merchant, ctx.actor)["code"]
        sid = ctx.records.create("alliance.settlement", {"ref": f"S-{code}-{last_start:%Y%m%d}-{last_end:%Y%m%d}", "merchant": merchant,
                                                         "period_start": last_start.isoformat(), "period_end": last_end.isoformat(), **totals}, ctx.actor)
        from crmkit.runtime.db import write_transaction

        for state in ("confirmed", "settled"):
            with write_transaction(services.engine) as conn:
                current = services.records.lock_for_transition(conn, "alliance.settlement", sid)
                data = {"settled_at": dt.datetime.now(dt.timezone.utc).isoformat()} if state == "settled" else {}
                services.records.write_transition(conn, "alliance.settlement", current, state, data, tuple(data), ctx.actor)
        created += 1
    return created
