"""Points pages. Reading needs read access to the member (the query service applies row scope); adjusting,
approving and redeeming need update access to members (checked by the policy point). Every POST carries the
CSRF token (Flask-WTF checks it for the whole app) and a one-time request key, so a resubmitted form posts nothing twice.
"""
from __future__ import annotations

import uuid
from pathlib import Path

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from crmkit.runtime.errors import CrmkitError, ValidationFailed
from crmkit.runtime.i18n_text import localize, text
from crmkit.runtime.web.i18n import current_locale
from crmkit.runtime.web.record_views import local_time
from crmkit.runtime.web.views import require_actor

from ..ledger import LedgerService
from ..ledger.approval import approval_threshold
from ..redemption import redeem_reward

points_blueprint = Blueprint("membership_points", __name__, url_prefix="/membership/points",
                             template_folder=str(Path(__file__).parent / "templates"))
MEMBER = "membership.member"
SOURCE_LABELS = {"order": ("Order", "消费单"), "reward": ("Redemption", "兑换"), "adjustment": ("Adjustment", "调整"), "expiry": ("Expiry", "过期"),
                 "manual": ("Manual", "手工"), "redemption": ("Redemption", "兑换")}
KIND_LABELS = {
    "earn": ("Earned", "获得"), "earn_pending": ("Pending", "待生效"), "confirm": ("Confirmed", "确认生效"), "redeem": ("Redeemed", "兑换"),
    "expire": ("Expired", "过期"), "reverse": ("Reversed", "冲销"), "adjust": ("Adjusted", "手工调整"),
}


def _services():
    return current_app.extensions["crmkit"]


def _ledger(services) -> LedgerService:
    return LedgerService(services.engine, approval_threshold=approval_threshold(services))


def _member(services, actor, record_id: int) -> dict:
    """The member as this actor may see it (raises not-found / permission errors otherwise)."""
    return services.queries.get(MEMBER, record_id, actor)


def _history(services, ledger, record_id: int, limit: int) -> list[dict]:
    zh = current_locale() == "zh"
    rows = []
    for h in ledger.history(record_id, limit=limit):
        en, cn = KIND_LABELS.get(h["kind"], (h["kind"], h["kind"]))
        src_en, src_zh = SOURCE_LABELS.get(h["source_type"], (h["source_type"], h["source_type"]))
        rows.append({**h, "kind_label": cn if zh else en, "source_label": src_zh if zh else src_en, "when": local_time(h["created_at"]),
                     "currency_label": ("奖励" if zh else "Reward") if h["currency"] == "reward" else ("升级" if zh else "Upgrade")})
    return rows


@points_blueprint.route("/member/<int:record_id>/panel")
def member_panel(record_id: int):
    """The read-only panel on the member's detail page (loaded with htmx)."""
    actor = require_actor()
    services = _services()
    _member(services, actor, record_id)
    ledger = LedgerService(services.engine)
    can_post = services.policy.allows(actor, services.store.catalog().entity(MEMBER), "update")
    return render_template("membership/points_panel.html", record_id=record_id, balances=ledger.balances(record_id),
                           history=_history(services, ledger, record_id, 10), can_post=can_post)


@points_blueprint.route("/member/<int:record_id>")
def member_desk(record_id: int):
    actor = require_actor()
    return _desk(_services(), actor, record_id)


def _desk(services, actor, record_id: int, *, errors: dict | None = None, form: dict | None = None, status: int = 200):
    member = _member(services, actor, record_id)
    entity = services.store.catalog().entity(MEMBER)
    ledger = _ledger(services)
    rewards = services.queries.list("membership.reward_item", actor, limit=100, labels=False, count="none").rows \
        if services.policy.allows(actor, services.store.catalog().entity("membership.reward_item"), "read") else []
    pending = [a for a in ledger.pending_adjustments(limit=200) if a["member_id"] == record_id]
    return render_template(
        "membership/points_desk.html", member=member, record_id=record_id, title=member.get(entity.title_field) or f"#{record_id}",
        balances=ledger.balances(record_id), history=_history(services, ledger, record_id, 100), rewards=[r for r in rewards if r.get("active")],
        pending=pending, can_post=services.policy.allows(actor, entity, "update"), threshold=ledger.approval_threshold,
        errors=errors or {}, form=form or {}, request_key=uuid.uuid4().hex, actor_id=actor.id,
    ), status


def _require_update(services, actor, record_id: int) -> None:
    _member(services, actor, record_id)
    services.policy.check(actor, services.store.catalog().entity(MEMBER), "update")


def _int(value, field: str, errors: dict) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        errors[field] = [text("Enter a whole number.", "请输入整数。")]
        return None


@points_blueprint.route("/member/<int:record_id>/adjust", methods=["POST"])
def adjust(record_id: int):
    actor = require_actor()
    services = _services()
    _require_update(services, actor, record_id)
    form = request.form.to_dict()
    errors: dict = {}
    points = _int(form.get("points"), "points", errors)
    if errors:
        return _desk(services, actor, record_id, errors=errors, form=form, status=422)
    try:
        res = _ledger(services).request_adjustment(record_id, points, form.get("reason", ""), actor=actor, currency=form.get("currency", "reward"))
    except ValidationFailed as exc:
        return _desk(services, actor, record_id, errors=exc.field_errors, form=form, status=422)
    except CrmkitError as exc:
        return _desk(services, actor, record_id, errors={"_form": [exc.message]}, form=form, status=exc.status)
    if res.status == "applied" and form.get("currency") == "upgrade":  # upgrade points moved: the member may be due a higher level
        from ..levels import evaluate

        evaluate(services, record_id, allow_down=False)
    if res.status == "applied":
        flash(localize(text("Adjustment posted: {points} points.", "调整已记账：{points} 积分。", points=points), current_locale()), "success")
    else:
        flash(localize(text("Above {n} points another user must approve this adjustment; it is waiting for approval.",
                            "超过 {n} 积分的调整须由另一位用户审批，已提交待审批。", n=_ledger(services).approval_threshold), current_locale()), "info")
    return redirect(url_for("membership_points.member_desk", record_id=record_id))


@points_blueprint.route("/adjustments/<int:adjustment_id>/<decision>", methods=["POST"])
def decide(adjustment_id: int, decision: str):
    actor = require_actor()
    services = _services()
    record_id = _int(request.form.get("member"), "member", {}) or 0
    _require_update(services, actor, record_id)
    ledger = _ledger(services)
    match = [a for a in ledger.pending_adjustments(limit=1000) if a["id"] == adjustment_id and a["member_id"] == record_id]
    try:
        if not match or decision not in ("approve", "reject"):
            raise ValidationFailed({"_form": [text("This adjustment is not waiting for approval.", "该调整不在待审批状态。")]})
        if decision == "approve":
            ledger.approve_adjustment(adjustment_id, actor=actor)
            flash(localize(text("Adjustment approved and posted.", "调整已审批并记账。"), current_locale()), "success")
        else:
            ledger.reject_adjustment(adjustment_id, actor=actor)
            flash(localize(text("Adjustment rejected.", "调整已驳回。"), current_locale()), "info")
    except CrmkitError as exc:
        return _desk(services, actor, record_id, errors={"_form": [exc.message]}, status=exc.status if exc.status != 400 else 422)
    return redirect(url_for("membership_points.member_desk", record_id=record_id))


@points_blueprint.route("/member/<int:record_id>/redeem", methods=["POST"])
def redeem(record_id: int):
    actor = require_actor()
    services = _services()
    _require_update(services, actor, record_id)
    form = request.form.to_dict()
    errors: dict = {}
    item = _int(form.get("item"), "item", errors)
    quantity = _int(form.get("quantity", "1"), "quantity", errors)
    key = (form.get("request_key") or "").strip()
    if not key or len(key) > 64:
        errors["_form"] = [text("The form expired; open the page again.", "表单已失效，请重新打开页面。")]
    if errors:
        return _desk(services, actor, record_id, errors=errors, form=form, status=422)
    try:
        services.queries.get("membership.reward_item", item, actor)  # the actor must be able to see the reward
        posted = redeem_reward(services, record_id, item, quantity, actor=actor, key=f"web:{actor.id}:{key}")
    except ValidationFailed as exc:
        return _desk(services, actor, record_id, errors=exc.field_errors, form=form, status=422)
    except CrmkitError as exc:
        if exc.status in (403, 404) and not isinstance(exc, ValidationFailed) and exc.code not in ("redemption_refused", "insufficient_points"):
            raise
        return _desk(services, actor, record_id, errors={"_form": [exc.message]}, form=form, status=409 if exc.status < 500 else exc.status)
    flash(localize(text("Redeemed for {points} points.", "已兑换，扣除 {points} 积分。", points=-posted.amount), current_locale()), "success")
    return redirect(url_for("membership_points.member_desk", record_id=record_id))



