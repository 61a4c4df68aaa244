"""Coupons: issue from a template (to one member, a filtered set of members, or by automation), redeem once by
code at the front desk, and expire what is past its validity.

Coupons and their templates are entities, so every write goes through the record service (validation, audit,
``record.*`` outbox events). One-time use: a redemption reads the coupon, checks its rules, then updates it with
``expected_version`` — the record service locks the row (``SELECT … FOR UPDATE`` on PostgreSQL, the database
write lock on SQLite) and refuses a version that moved, so of two concurrent redemptions of one code exactly one
succeeds. The expiry job updates the same way, so it never overwrites a coupon redeemed a moment earlier.
Issuing is idempotent per ``issue_key`` (a unique field): a re-run of a segment issue or a resubmitted action
issues nothing twice.
"""
from __future__ import annotations

import datetime as dt
import decimal
import secrets
from dataclasses import dataclass, replace

from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.errors import CrmkitError, StaleRecord, ValidationFailed
from crmkit.runtime.i18n_text import text

from .earning import BUSINESS_TZ

COUPON = "membership.coupon"
TEMPLATE = "membership.coupon_template"
MEMBER = "membership.member"
D = decimal.Decimal
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed at a till
CODE_LENGTH = 16  # 32^16 = 2^80 codes: unguessable
INLINE_LIMIT = 100  # a segment up to this size is issued at once; a larger one runs as a job
PAGE = 200


class CouponRefused(CrmkitError):
    code = "coupon_refused"
    status = 409
    default_message = text("The coupon cannot be used.", "该优惠券不能使用。")


class CouponNotFound(CouponRefused):
    code = "coupon_not_found"
    status = 404


@dataclass(frozen=True)
class Redeemed:
    coupon_id: int
    code: str
    discount: D
    pay: D


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(raw: str | None) -> str:
    """Codes are typed with spaces, dashes or in lower case; compare them in their stored form."""
    return "".join(ch for ch in (raw or "").upper() if ch.isalnum())[:32]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _day_start(day) -> dt.datetime:
    if isinstance(day, str):
        day = dt.date.fromisoformat(day)
    return dt.datetime.combine(day, dt.time(), BUSINESS_TZ).astimezone(dt.timezone.utc)


def _aware(value) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _money(value) -> D:
    return D(str(value)) if value not in (None, "") else D(0)


def validity(template: dict, issued_at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """(valid from, valid until) of a coupon issued at ``issued_at``: the template's fixed dates (whole business days,
    China time) or ``valid_days`` days from issue."""
    if template.get("validity") == "fixed":
        if not template.get("valid_until"):
            raise ValidationFailed({"template": [text("The template has fixed dates but no end date.", "该模板为固定日期，但未设置失效日期。")]})
        start = _day_start(template["valid_from"]) if template.get("valid_from") else issued_at
        end_day = template["valid_until"]
        end_day = dt.date.fromisoformat(end_day) if isinstance(end_day, str) else end_day
        return start, _day_start(end_day + dt.timedelta(days=1))
    return issued_at, issued_at + dt.timedelta(days=int(template.get("valid_days") or 30))


def _template(services, template_id: int) -> dict:
    return services.queries.get(TEMPLATE, template_id, SYSTEM)


def _existing(services, key: str) -> int | None:
    rows = services.queries.list(COUPON, SYSTEM, filter={"field": "issue_key", "op": "eq", "value": key}, fields=["id"], limit=1,
                                 labels=False, count="none").rows
    return rows[0]["id"] if rows else None


def issue(services, template_id: int, member_id: int, actor: Actor, *, source: str = "manual", key: str | None = None,
          now: dt.datetime | None = None, conn=None) -> int:
    """Issue one coupon of ``template_id`` to ``member_id``; returns its id (the existing one when ``key`` was used).
    With ``conn`` it is written in the caller's transaction (a points redemption issuing the coupon it bought)."""
    if key is not None:
        found = _existing(services, key)
        if found is not None:
            return found
    tpl = _template(services, template_id)
    if not tpl.get("active"):
        raise CouponRefused(text("Coupon template {name} is not active.", "优惠券模板“{name}”已停用。", name=tpl["name"]))
    now = now or utcnow()
    start, end = validity(tpl, now)
    if end <= now:
        raise CouponRefused(text("Coupon template {name} has ended; no coupons can be issued.", "优惠券模板“{name}”已过有效期，不能再发放。",
                                 name=tpl["name"]))
    data = {"code": new_code(), "member": member_id, "template": template_id, "status": "issued", "source": source,
            "issued_at": now.isoformat(), "valid_from": start.isoformat(), "valid_until": end.isoformat()}
    if key is not None:
        data["issue_key"] = key[:120]
    if conn is not None:
        return services.records.create_within(conn, COUPON, data, actor)
    return services.records.create(COUPON, data, actor)


def member_ids(services, actor: Actor, member_filter) -> list[int]:
    """The members matching a filter tree, as ``actor`` may see them (the query service applies row scope)."""
    ids: list[int] = []
    cursor = None
    while True:
        page = services.queries.list(MEMBER, actor, filter=member_filter, fields=["id"], sort=["id"], cursor=cursor, limit=PAGE,
                                     labels=False, count="none")
        ids += [r["id"] for r in page.rows]
        if not page.next_cursor:
            return ids
        cursor = page.next_cursor


def issue_to_members(services, template_id: int, ids: list[int], actor: Actor, *, batch: str, progress=None, cancelled=None) -> dict:
    """Issue one coupon to each member; keyed ``<batch>:<member>``, so a re-run (a retried job) skips those done."""
    issued = skipped = 0
    for n, member_id in enumerate(ids, 1):
        if cancelled is not None and cancelled():
            break
        key = f"{batch}:{member_id}"
        if _existing(services, key) is not None:
            skipped += 1
        else:
            issue(services, template_id, member_id, actor, source="segment", key=key)
            issued += 1
        if progress is not None and (n % 50 == 0 or n == len(ids)):
            progress(n, len(ids), None)
    return {"issued": issued, "skipped": skipped, "members": len(ids)}


def issue_to_segment(services, template_id: int, member_filter, actor: Actor, *, batch: str | None = None) -> dict:
    """Issue to every member matching ``member_filter``: at once for a small set, as a ``membership.coupons_issue``
    job (with progress) for a larger one. Returns {"issued", ...} or {"job": id, "members": n}."""
    services.policy.check(actor, services.store.catalog().entity(COUPON), "create")
    _template(services, template_id)  # a missing template is refused before anything is queued
    batch = batch or f"seg:{secrets.token_hex(8)}"
    ids = member_ids(services, actor, member_filter)
    if len(ids) <= INLINE_LIMIT:
        return issue_to_members(services, template_id, ids, actor, batch=batch)
    job = services.jobs.submit(ISSUE_JOB, {"template": template_id, "filter": member_filter, "batch": batch, "actor_id": actor.id},
                               actor=actor, dedupe_key=f"coupons:{batch}")
    return {"job": job, "members": len(ids), "batch": batch}


ISSUE_JOB = "membership.coupons_issue"


def issue_job(ctx, payload: dict) -> dict:
    """The segment job: members are selected again as the user who started it, under their row scope."""
    from crmkit.runtime.imports.actor import actor_by_id

    services = ctx.services
    actor = actor_by_id(services.engine, payload["actor_id"]) if payload.get("actor_id") else SYSTEM
    ids = member_ids(services, actor, payload.get("filter"))
    return issue_to_members(services, int(payload["template"]), ids, actor, batch=payload["batch"], progress=ctx.progress,
                            cancelled=ctx.cancel_requested)


def issue_for_reward(services, conn, item: dict, member_id: int, quantity: int, entry_id: int, *, actor: Actor, now: dt.datetime) -> list[int]:
    """The coupons a points redemption of a coupon reward bought: one per unit, keyed by the ledger entry."""
    if not item.get("coupon_template"):
        from .ledger import RedemptionRefused

        raise RedemptionRefused(text("{name} has no coupon template; set one on the reward first.", "“{name}”未设置优惠券模板，请先在奖品上设置。",
                                     name=item["name"]))
    return [issue(services, int(item["coupon_template"]), member_id, as_issuer(actor), source="reward", key=f"reward:{entry_id}:{i}",
                  now=now, conn=conn) for i in range(quantity)]


# -- redeeming ---------------------------------------------------------------------------------------------
def find(services, code: str, actor: Actor) -> dict | None:
    """The coupon with this code as ``actor`` may see it, with its template under ``"_template"``."""
    code = normalize_code(code)
    if not code:
        return None
    rows = services.queries.list(COUPON, actor, filter={"field": "code", "op": "eq", "value": code}, limit=1, count="none").rows
    if not rows:
        return None
    coupon = rows[0]
    coupon["_template"] = _template(services, coupon["template"])
    return coupon


def discount_for(template: dict, amount: D) -> D:
    if template.get("kind") == "rate":
        off = (amount * _money(template.get("discount_rate")) / 100).quantize(D("0.01"), rounding=decimal.ROUND_HALF_UP)
        if template.get("max_discount") not in (None, ""):
            off = min(off, _money(template["max_discount"]))
    else:
        off = _money(template.get("amount"))
    return min(off, amount)


def unusable(coupon: dict, now: dt.datetime) -> CouponRefused | None:
    """Why this coupon cannot be used at all right now (used, void, expired, not yet valid), whatever the order."""
    status = coupon["status"]
    if status == "used":
        return CouponRefused(text("Coupon {code} was already used.", "优惠券 {code} 已使用。", code=coupon["code"]))
    if status == "void":
        return CouponRefused(text("Coupon {code} was voided.", "优惠券 {code} 已作废。", code=coupon["code"]))
    until = _aware(coupon["valid_until"])
    if status == "expired" or (until is not None and now >= until):
        return CouponRefused(text("Coupon {code} has expired.", "优惠券 {code} 已过期。", code=coupon["code"]))
    start = _aware(coupon.get("valid_from"))
    if start is not None and now < start:
        return CouponRefused(text("Coupon {code} is not valid yet.", "优惠券 {code} 尚未生效。", code=coupon["code"]))
    return None


def check(coupon: dict, *, amount: D, store_code: str | None, category: str | None, now: dt.datetime) -> D:
    """The discount this coupon gives on ``amount``, or CouponRefused saying why it cannot be used."""
    tpl = coupon["_template"]
    refused = unusable(coupon, now)
    if refused is not None:
        raise refused
    minimum = _money(tpl.get("min_spend"))
    if amount < minimum:
        raise CouponRefused(text("This coupon needs a spend of at least {min}; the order is {amount}.", "该券需消费满 {min} 元，本单 {amount} 元。",
                                 min=f"{minimum:.2f}", amount=f"{amount:.2f}"))
    stores = [s.upper() for s in (tpl.get("store_codes") or [])]
    if stores and (store_code or "").upper() not in stores:
        raise CouponRefused(text("This coupon is valid only at stores {stores}.", "该券仅限门店 {stores} 使用。", stores=", ".join(stores)))
    categories = tpl.get("categories") or []
    if categories and category not in categories:
        raise CouponRefused(text("This coupon is valid only for {cats}.", "该券仅限品类：{cats}。", cats=", ".join(categories)))
    return discount_for(tpl, amount)


def redeem(services, code: str, actor: Actor, *, amount=None, order_id: int | None = None, store_id: int | None = None,
           category: str | None = None, now: dt.datetime | None = None) -> Redeemed:
    """Use a coupon against an order (``order_id``) or an amount at a store; succeeds once per coupon."""
    services.policy.check(actor, services.store.catalog().entity(COUPON), "update")
    now = now or utcnow()
    coupon = find(services, code, actor)
    if coupon is None:
        raise CouponNotFound(text("There is no coupon with code {code}.", "没有券码为 {code} 的优惠券。", code=normalize_code(code) or "—"))
    if order_id is not None:
        order = services.queries.get("membership.order", order_id, actor)
        if order.get("member") != coupon["member"]:
            raise CouponRefused(text("This coupon belongs to another member than the order's.", "该券不属于此订单的会员。"))
        amount = order["amount"] if amount in (None, "") else amount
        store_id = store_id or order.get("store")
    try:
        amount = D(str(amount)).quantize(D("0.01"))
        if amount < 0 or not amount.is_finite():
            raise decimal.InvalidOperation
    except (decimal.InvalidOperation, ValueError, TypeError):
        raise ValidationFailed({"amount": [text("Enter the order amount, e.g. 128.00.", "请输入订单金额，如 128.00。")]}) from None
    store_code = services.queries.get("membership.store", store_id, actor)["code"] if store_id else None
    off = check(coupon, amount=amount, store_code=store_code, category=category or None, now=now)
    data = {"status": "used", "used_at": now.isoformat(), "order_amount": str(amount), "discount": str(off)}
    if order_id is not None:
        data["used_in_order"] = order_id
    if store_id:
        data["used_store"] = store_id
    try:  # the redemption's checks above authorize the write; the template's roles cannot edit a coupon's fields by hand
        services.records.update(COUPON, coupon["id"], data, as_issuer(actor), expected_version=coupon["row_version"])
    except StaleRecord:  # someone redeemed (or expired, voided) it between our read and our write
        again = find(services, code, actor)
        check(again, amount=amount, store_code=store_code, category=category or None, now=now)  # says why, normally "already used"
        raise CouponRefused(text("Coupon {code} changed while it was being redeemed; try again.", "优惠券 {code} 正在被修改，请重试。",
                                 code=coupon["code"])) from None
    return Redeemed(coupon["id"], coupon["code"], off, amount - off)


def void(services, coupon_id: int, reason: str, actor: Actor) -> None:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed({"reason": [text("Give a reason for voiding the coupon.", "请填写作废原因。")]})
    services.policy.check(actor, services.store.catalog().entity(COUPON), "update")
    coupon = services.queries.get(COUPON, coupon_id, actor)
    if coupon["status"] != "issued":
        raise CouponRefused(text("Only an unused coupon can be voided.", "只有未使用的优惠券可以作废。"))
    services.records.update(COUPON, coupon_id, {"status": "void", "void_reason": reason[:200]}, as_issuer(actor), expected_version=coupon["row_version"])


# -- expiry --------------------------------------------------------------------------------------------------
EXPIRE_JOB = "membership.coupons_expire"


def expire_due(services, now: dt.datetime | None = None, *, actor: Actor = SYSTEM) -> int:
    """Mark every issued coupon past its validity expired; returns how many. A re-run finds nothing left to do."""
    now = now or utcnow()
    due = {"and": [{"field": "status", "op": "eq", "value": "issued"}, {"field": "valid_until", "op": "lte", "value": now.isoformat()}]}
    done = 0
    skip: set[int] = set()
    while True:
        rows = [r for r in services.queries.list(COUPON, actor, filter=due, fields=["id"], sort=["id"], limit=PAGE, labels=False,
                                                 count="none").rows if r["id"] not in skip]
        if not rows:
            return done
        for r in rows:
            try:
                services.records.update(COUPON, r["id"], {"status": "expired"}, actor, expected_version=r["row_version"])
                done += 1
            except StaleRecord:  # redeemed or voided meanwhile: the next page reads it again if it is still due
                pass
            except CrmkitError:
                skip.add(r["id"])


def expire_job(ctx, payload: dict) -> dict:
    now = dt.datetime.fromisoformat(payload["now"]) if payload.get("now") else None
    return {"expired": expire_due(ctx.services, now)}


def as_issuer(actor: Actor) -> Actor:
    """The coupon operation (issuing for a points redemption, redeeming a code, voiding with a reason) authorizes its
    own write, not the clerk's field rights: the template's roles have every coupon field read-only (roles.py), so a
    status or discount cannot be changed by hand. The clerk's id stays on the audit entry."""
    return replace(actor, is_admin=True)
