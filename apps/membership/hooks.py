"""What the membership app plugs into the runtime: its ledger tables, the order listener and named actions."""
from __future__ import annotations

import datetime as dt

from crmkit.runtime.packages import AppHooks

from .carryover import carry_over, reverse_carry_over
from .demo import seed_demo
from .earning import on_order_written
from .join_hooks import register_joining
from .ledger import LedgerService
from .ledger import tables as ledger_tables
from .redemption import redeem_reward
from .workflow_actions import create_member


def register(hooks: AppHooks) -> AppHooks:
    hooks.demo_seeder(seed_demo)
    hooks.tables(ledger_tables.metadata)
    hooks.on_record_written("membership.order", on_order_written)
    hooks.action("points.expire_due")(expire_due)
    hooks.action("points.redeem")(redeem)
    hooks.action("points.adjust")(adjust)
    hooks.action("points.carry_over")(carry)
    hooks.action("points.reverse_carry_over")(uncarry)
    hooks.transition_action("create_member")(create_member)
    from .web import points_blueprint

    hooks.blueprint(points_blueprint)
    hooks.detail_panel("membership.member", "membership_points.member_panel", en="Points", zh="积分")
    from .loyalty_hooks import register_loyalty  # coupons, levels, scheduled jobs

    register_loyalty(hooks)
    register_joining(hooks)  # 入会 checks, card pool and card actions, roles, the public join form
    from .lifecycle_hooks import register_lifecycle  # stages, RFM, ledger figures, lifecycle coupons, workbench defaults

    register_lifecycle(hooks)
    from .activity_hooks import register_activities

    register_activities(hooks)  # segments, member care, activities (after the roles: it grants on them)
    return hooks


def expire_due(services, actor, payload: dict) -> dict:
    """Periodic job: expire every lot due by ``payload["now"]`` (ISO timestamp; default: now)."""
    now = dt.datetime.fromisoformat(payload["now"]) if payload.get("now") else None
    return {"entries": LedgerService(services.engine).expire_due(now, actor=actor)}


def carry(services, actor, payload: dict) -> dict:
    """结转 for a plan (``payload["plan"]``), usually run once the plan has ended."""
    services.policy.check(actor, services.store.catalog().entity("membership.points_plan"), "update")
    return carry_over(services, int(payload["plan"]), actor=actor)


def uncarry(services, actor, payload: dict) -> dict:
    services.policy.check(actor, services.store.catalog().entity("membership.points_plan"), "update")
    return reverse_carry_over(services, int(payload["plan"]), actor=actor)


def _may_post_points(services, actor, member_id: int) -> None:
    """Posting points for a member needs update access to that member (and the member must be visible to the actor)."""
    services.queries.get("membership.member", member_id, actor)
    services.policy.check(actor, services.store.catalog().entity("membership.member"), "update")


def redeem(services, actor, payload: dict) -> dict:
    _may_post_points(services, actor, int(payload["member"]))
    posted = redeem_reward(services, int(payload["member"]), int(payload["item"]), int(payload.get("quantity", 1)), actor=actor, key=str(payload["key"]))
    return {"entry": posted.entry_id, "points": posted.amount, "created": posted.created}


def adjust(services, actor, payload: dict) -> dict:
    from .ledger.approval import approval_threshold

    _may_post_points(services, actor, int(payload["member"]))
    ledger = LedgerService(services.engine, approval_threshold=approval_threshold(services))
    res = ledger.request_adjustment(int(payload["member"]), payload.get("points"), payload.get("reason", ""), actor=actor,
                                    currency=payload.get("currency", "reward"))
    if res.posted and payload.get("currency") == "upgrade":  # upgrade points moved: the member may be due a higher level
        from .levels import evaluate

        evaluate(services, int(payload["member"]), allow_down=False)
    return {"adjustment": res.adjustment_id, "status": res.status, "entry": res.posted.entry_id if res.posted else None}
