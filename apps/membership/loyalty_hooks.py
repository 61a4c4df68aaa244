"""What coupons, levels and the scheduled ledger jobs plug into the runtime: named actions, job kinds with their
daily schedules, the level listener on orders and the staff pages. Called from ``hooks.register``."""
from __future__ import annotations

import datetime as dt

from huey import crontab
from sqlalchemy import select

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.i18n_text import text
from crmkit.runtime.packages import AppHooks

from . import coupons, levels
from .earning import BUSINESS_TZ
from .ledger import LedgerService

POINTS_EXPIRE_JOB = "membership.points_expire"


def register_loyalty(hooks: AppHooks) -> AppHooks:
    from .coupon_demo import seed_coupons

    hooks.demo_seeder(seed_coupons)  # after the main demo seeder (registered first): it needs the members and the catalogue
    hooks.on_record_written("membership.order", levels.on_order_written)  # after the earning listener: points first
    hooks.action("coupons.issue")(issue_action)
    hooks.action("coupons.redeem")(redeem_action)
    hooks.action("coupons.void")(void_action)
    hooks.action("coupons.expire_due")(lambda services, actor, payload: {"expired": coupons.expire_due(services, _now(payload))})
    hooks.action("levels.set")(set_level_action)
    hooks.action("levels.evaluate")(evaluate_action)
    # Daily, in the small hours (UTC crontab): lots and coupons past their validity, then the period-end level review.
    hooks.job(POINTS_EXPIRE_JOB, installed_only(points_expire_job), schedule=crontab(minute="10", hour="18"))  # 02:10 China time
    hooks.job(coupons.EXPIRE_JOB, installed_only(coupons.expire_job), schedule=crontab(minute="20", hour="18"))
    hooks.job(levels.EVALUATE_JOB, installed_only(period_end_job), schedule=crontab(minute="40", hour="18"), payload={"period_end_only": True})
    hooks.job(coupons.ISSUE_JOB, installed_only(coupons.issue_job))
    from .web.loyalty_views import loyalty_blueprint

    hooks.blueprint(loyalty_blueprint)
    hooks.detail_panel("membership.member", "membership_loyalty.member_panel", en="Level & coupons", zh="等级与优惠券")
    return hooks


def installed_only(handler):
    """Job kinds are registered on every instance; where membership is not installed its tables do not exist,
    so the scheduled run finishes at once and says why."""
    def run(ctx, payload: dict):
        from crmkit.runtime.storage import platform_tables as pt

        with ctx.services.engine.connect() as conn:
            if conn.execute(select(pt.installed_app.c.id).where(pt.installed_app.c.id == "membership")).first() is None:
                return {"skipped": "app membership is not installed"}
        return handler(ctx, payload)

    return run


def _now(payload: dict) -> dt.datetime | None:
    return dt.datetime.fromisoformat(payload["now"]) if payload.get("now") else None


def _int(payload: dict, name: str) -> int:
    try:
        return int(payload[name])
    except (KeyError, TypeError, ValueError):
        raise ValidationFailed({name: [text("Give {name} as a record id.", "请以记录 ID 提供 {name}。", name=name)]}) from None


def issue_action(services, actor, payload: dict) -> dict:
    """``{"template": id, "member": id, "key"?: str}`` for one member, or ``{"template": id, "filter": tree}`` for a segment."""
    template = _int(payload, "template")
    if "filter" in payload:
        return coupons.issue_to_segment(services, template, payload["filter"], actor, batch=payload.get("key"))
    member = _int(payload, "member")
    services.queries.get("membership.member", member, actor)  # the actor must see the member
    source = payload.get("source") if payload.get("source") in ("manual", "automation") else "automation"
    cid = coupons.issue(services, template, member, actor, source=source, key=payload.get("key"))
    return {"coupon": cid, "code": services.queries.get(coupons.COUPON, cid, actor)["code"]}


def redeem_action(services, actor, payload: dict) -> dict:
    """``{"code": str, "amount"?: "128.00", "order"?: id, "store"?: id, "category"?: str}``."""
    done = coupons.redeem(services, str(payload.get("code") or ""), actor, amount=payload.get("amount"),
                          order_id=int(payload["order"]) if payload.get("order") else None,
                          store_id=int(payload["store"]) if payload.get("store") else None, category=payload.get("category"), now=_now(payload))
    return {"coupon": done.coupon_id, "code": done.code, "discount": str(done.discount), "pay": str(done.pay)}


def void_action(services, actor, payload: dict) -> dict:
    coupons.void(services, _int(payload, "coupon"), payload.get("reason", ""), actor)
    return {"coupon": int(payload["coupon"]), "status": "void"}


def set_level_action(services, actor, payload: dict) -> dict:
    """``{"member": id, "level": id or null, "reason": str}``: a manual level change, kept in the level history."""
    level = payload.get("level")
    changed = levels.set_level(services, _int(payload, "member"), int(level) if level not in (None, "") else None, payload.get("reason", ""), actor)
    return {"changed": changed}


def evaluate_action(services, actor, payload: dict) -> dict:
    services.policy.check(actor, services.store.catalog().entity("membership.member"), "update")
    if payload.get("member"):
        new = levels.evaluate(services, _int(payload, "member"), allow_down=bool(payload.get("allow_down", True)))
        return {"changed": new is not None, "level": new}
    return levels.evaluate_all(services, allow_down=bool(payload.get("allow_down", True)))


def points_expire_job(ctx, payload: dict) -> dict:
    return {"entries": LedgerService(ctx.services.engine).expire_due(_now(payload), actor=SYSTEM)}


def period_end_job(ctx, payload: dict) -> dict:
    """Daily; with ``period_end_only`` it reviews every member's level only on the day after a points plan ended."""
    services = ctx.services
    if payload.get("period_end_only"):
        now = _now(payload) or dt.datetime.now(dt.timezone.utc)
        yesterday = now.astimezone(BUSINESS_TZ).date() - dt.timedelta(days=1)
        plans = services.records.table_cache.tables(services.store.catalog())["membership.points_plan"]
        with services.engine.connect() as c:
            ended = c.execute(select(plans.c.id).where(plans.c.ends_on == yesterday, plans.c.deleted_at.is_(None)).limit(1)).first()
        if ended is None:
            return {"skipped": f"no points plan ended on {yesterday.isoformat()}"}
    return levels.evaluate_all(services, allow_down=True, progress=ctx.progress)
