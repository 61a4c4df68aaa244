"""What the lifecycle plugs into the runtime (called from ``hooks.register``): the stage listeners, the daily job that
refreshes stages, RFM and the ledger figures, the ``lifecycle.coupon`` action the shipped automations call, and the
role workbench defaults."""
from __future__ import annotations

import datetime as dt

from huey import crontab

from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.i18n_text import text
from crmkit.runtime.packages import AppHooks

from . import coupons, figures, lifecycle
from .loyalty_hooks import installed_only

REFRESH_JOB = "membership.lifecycle_refresh"
COUPON_KINDS = {"welcome": "welcome_coupon", "wakeup": "wakeup_coupon", "birthday": "birthday_coupon"}


def register_lifecycle(hooks: AppHooks) -> AppHooks:
    from .workbench_defaults import install_workbench_defaults

    hooks.on_record_written("membership.order", lifecycle.on_order_written)  # after earning and levels
    hooks.on_record_written(lifecycle.SETTING, lifecycle.check_setting)
    hooks.action("lifecycle.coupon")(coupon_action)
    hooks.action("lifecycle.refresh")(lambda services, actor, payload: refresh(services, payload))
    # 02:30 China time: after points expiry (02:10) and coupon expiry (02:20), so the figures include them.
    hooks.job(REFRESH_JOB, installed_only(refresh_job), schedule=crontab(minute="30", hour="18"))
    hooks.roles(install_workbench_defaults)
    hooks.demo_seeder(seed_lifecycle)  # registered after the other seeders: stages of the seeded members and orders
    return hooks


def _now(payload: dict) -> dt.datetime | None:
    return dt.datetime.fromisoformat(payload["now"]) if payload.get("now") else None


def refresh(services, payload: dict, progress=None) -> dict:
    members = lifecycle.refresh_all(services, _now(payload), progress=progress)
    return {"members": members, "figures": figures.refresh(services)}


def refresh_job(ctx, payload: dict) -> dict:
    return refresh(ctx.services, payload, ctx.progress)


def coupon_action(services, actor, payload: dict) -> dict:
    """``{"member": id, "coupon": "welcome" | "wakeup" | "birthday", "occurrence": str, "at"?: datetime}``: issue the
    coupon template set in the lifecycle parameters, at most once per member and occurrence (the coupon's issue key)."""
    kind = payload.get("coupon")
    if kind not in COUPON_KINDS:
        raise ValidationFailed({"coupon": [text("Choose welcome, wakeup or birthday.", "请选择 welcome、wakeup 或 birthday。")]})
    occurrence = payload.get("occurrence")
    if occurrence in (None, ""):
        raise ValidationFailed({"occurrence": [text("Give the occurrence (e.g. the join date).", "请提供触发依据（如入会日期）。")]})
    occurrence = occurrence.isoformat() if isinstance(occurrence, dt.date) else str(occurrence)
    member = int(payload["member"])
    services.queries.get(lifecycle.MEMBER, member, actor)  # the actor must see the member, and may change members
    services.policy.check(actor, services.store.catalog().entity(lifecycle.MEMBER), "update")
    tables = services.records.table_cache.tables(services.store.catalog())
    with services.engine.connect() as conn:
        template = lifecycle.setting(conn, tables).get(COUPON_KINDS[kind])
    if template is None:
        return {"skipped": f"no {kind} coupon template in the lifecycle parameters"}
    at = payload.get("at")
    at = dt.datetime.fromisoformat(at) if isinstance(at, str) else at if isinstance(at, dt.datetime) else None
    key = f"lifecycle:{kind}:{member}:{occurrence}"
    cid = coupons.issue(services, int(template), member, coupons.as_issuer(actor), source="automation", key=key, now=at)
    return {"coupon": cid, "key": key}


def seed_lifecycle(ctx) -> int:
    """Demo: lifecycle parameters with the demo coupon templates, then every member's stage and the ledger figures."""
    services = ctx.services
    if services is None or ctx.queries.list(lifecycle.SETTING, ctx.actor, limit=1, count="none", labels=False).rows:
        return 0
    codes = {r["code"]: r["id"] for r in ctx.queries.list(coupons.TEMPLATE, ctx.actor, limit=50, count="none", labels=False).rows}
    ctx.records.create(lifecycle.SETTING, {"name": "默认参数", "new_days": 30, "dormant_days": 30, "churn_days": 180,
                                           "welcome_coupon": codes.get("M100J15"), "wakeup_coupon": codes.get("M100J15"),
                                           "birthday_coupon": codes.get("BDAY85")}, ctx.actor)
    refresh(services, {})
    return 1
