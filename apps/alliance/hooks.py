"""What the alliance app plugs into the runtime: record listeners, named actions, the portal blueprint, demo data.

No app-owned tables: every alliance record is an entity, and points live only in the membership ledger."""
from __future__ import annotations

import datetime as dt
import decimal

from crmkit.runtime.packages import AppHooks

from .demo import seed_demo
from .earning import on_purchase_written
from .offers import redeem_offer, reverse_redemption
from .reminders import contract_reminders
from .reputation import rate_merchant
from .roles import ensure_roles
from .settlement import add_adjustment, create_statement, on_settlement_written
from .staff import is_staff, link_staff, merchant_of


def register(hooks: AppHooks) -> AppHooks:
    hooks.demo_seeder(seed_demo)
    hooks.on_record_written("alliance.purchase", on_purchase_written)
    hooks.on_record_written("alliance.settlement", on_settlement_written)
    hooks.action("offer.redeem")(redeem)
    hooks.action("offer.reverse")(reverse)
    hooks.action("staff.link")(link)
    hooks.action("settlement.create")(statement)
    hooks.action("settlement.adjust")(adjust)
    hooks.action("merchant.rate")(rate)
    hooks.action("contracts.remind")(remind)
    hooks.roles(ensure_roles)  # at every install, before demo data
    hooks.action("roles.setup")(setup_roles)
    from .web import portal_blueprint

    hooks.blueprint(portal_blueprint)
    from .joint_activities import LINK, join_key
    from .web.joint import joint_blueprint

    hooks.validator(LINK)(join_key)
    hooks.action("activity.attach_merchant")(attach_merchant)
    hooks.blueprint(joint_blueprint)
    hooks.detail_panel("membership.activity", "alliance_joint.activity_merchants", en="Alliance merchants", zh="联盟商家")
    hooks.nav_link("alliance_portal.home", en="Merchant counter", zh="商家柜台", icon="check-circle", visible=is_staff)
    return hooks


def redeem(services, actor, payload: dict) -> dict:
    """Redeem at the actor's own merchant (staff) or at ``payload["merchant"]`` (admins)."""
    merchant = int(payload["merchant"]) if actor.is_admin and payload.get("merchant") else merchant_of(services, actor)
    bill = decimal.Decimal(str(payload["bill"])) if payload.get("bill") not in (None, "") else None
    res = redeem_offer(services, merchant_id=merchant, offer_id=int(payload["offer"]), member_id=int(payload["member"]), actor=actor,
                       key=str(payload["key"]), bill=bill)
    return {"redemption": res.redemption_id, "entry": res.entry_id, "points": res.points, "benefit": str(res.benefit), "created": res.created}


def reverse(services, actor, payload: dict) -> dict:
    return {"entry": reverse_redemption(services, int(payload["redemption"]), actor=actor, reason=str(payload.get("reason", "")))}


def link(services, actor, payload: dict) -> dict:
    services.policy.check(actor, services.store.catalog().entity("alliance.merchant"), "update")
    return {"role": link_staff(services, int(payload["merchant"]), int(payload["user"]), actor=actor)}


def statement(services, actor, payload: dict) -> dict:
    return {"settlement": create_statement(services, int(payload["merchant"]), dt.date.fromisoformat(payload["start"]),
                                           dt.date.fromisoformat(payload["end"]), actor=actor)}


def adjust(services, actor, payload: dict) -> dict:
    return {"row_version": add_adjustment(services, int(payload["settlement"]), decimal.Decimal(str(payload["amount"])), str(payload.get("reason", "")),
                                          actor=actor, redemption_id=payload.get("redemption"))}


def rate(services, actor, payload: dict) -> dict:
    return {"rating_change": rate_merchant(services, int(payload["merchant"]), int(payload["rating"]), actor=actor)}


def remind(services, actor, payload: dict) -> dict:
    """Periodic job: a follow-up task for every formal merchant whose contract ends within ``days`` (default 30)."""
    today = dt.date.fromisoformat(payload["today"]) if payload.get("today") else None
    return {"reminders": contract_reminders(services, actor, today=today, days=int(payload.get("days", 30)))}


def attach_merchant(services, actor, payload: dict) -> dict:
    """``{"activity": id, "merchant": id, "status"?: "invited" | "participating" | "declined"}``: a joint activity (联合活动)."""
    from .joint_activities import attach

    return {"link": attach(services, int(payload["activity"]), int(payload["merchant"]), actor, status=payload.get("status", "invited"))}


def setup_roles(services, actor, payload: dict) -> dict:
    """Put the template's grants back on Alliance Manager, Alliance Finance and Merchant Staff (administrators only;
    install creates them)."""
    from crmkit.runtime.errors import PermissionDenied
    from crmkit.runtime.i18n_text import text

    if not actor.is_admin:
        raise PermissionDenied(text("Only administrators can set up roles.", "只有管理员可以设置角色。"))
    return ensure_roles(services, actor)
