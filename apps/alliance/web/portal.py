"""The merchant staff portal: verify a member, redeem an offer at the counter, record a purchase.

The merchant is always the one the logged-in user is staff of (``staff.merchant_of``), never a request
parameter. Members are found by exact card number or mobile and shown masked. Every POST carries the CSRF token
(Flask-WTF checks it for the whole app) and a one-time request key, so a resubmitted form writes nothing twice.
"""
from __future__ import annotations

import datetime as dt
import decimal
import uuid
from pathlib import Path

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from crmkit.apps.membership.ledger import LedgerRefused, LedgerService
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.i18n_text import localize, text
from crmkit.runtime.web.i18n import current_locale
from crmkit.runtime.web.record_views import local_time
from crmkit.runtime.web.views import require_actor

from ..errors import OfferRefused
from ..offers import redeem_offer
from ..staff import as_app, find_member, merchant_of

portal_blueprint = Blueprint("alliance_portal", __name__, url_prefix="/alliance/portal", template_folder=str(Path(__file__).parent / "templates"))


def _services():
    return current_app.extensions["crmkit"]


def _page(services, actor, *, q: str = "", errors: dict | None = None, form: dict | None = None, status: int = 200):
    merchant_id = merchant_of(services, actor)
    merchant = services.queries.get("alliance.merchant", merchant_id, actor)  # row scope: the staff role sees its own merchant only
    offers = services.queries.list("alliance.offer", actor, filter={"field": "merchant", "op": "eq", "value": merchant_id}, limit=100,
                                   labels=False, count="none").rows
    names = {o["id"]: o["name"] for o in offers}
    recent = services.queries.list("alliance.redemption", actor, filter={"field": "merchant", "op": "eq", "value": merchant_id}, limit=10,
                                   labels=False, count="none", sort=["-redeemed_at"]).rows
    member = find_member(services, q) if q else None
    balance = LedgerService(services.engine).balances(member["id"])["reward"]["wallet"] if member else None
    today = dt.date.today()
    usable = [o for o in offers if o.get("active") and (not o.get("valid_until") or str(o["valid_until"]) >= today.isoformat())]
    return render_template("alliance/portal.html", merchant=merchant, offers=usable, q=q, member=member, balance=balance,
                           not_found=bool(q) and member is None, errors=errors or {}, form=form or {}, request_key=uuid.uuid4().hex,
                           recent=[{**r, "offer_name": names.get(r["offer"], "#%s" % r["offer"]), "when": local_time(r["redeemed_at"])} for r in recent],
                           ), status


@portal_blueprint.route("/")
def home():
    actor = require_actor()
    return _page(_services(), actor, q=(request.args.get("q") or "").strip())


def _bill(value, errors: dict) -> decimal.Decimal | None:
    if value in (None, ""):
        return None
    try:
        bill = decimal.Decimal(str(value).strip())
    except decimal.InvalidOperation:
        errors["bill"] = [text("Enter an amount such as 88.50.", "请输入金额，例如 88.50。")]
        return None
    if not bill.is_finite() or bill < 0 or bill > 10_000_000:
        errors["bill"] = [text("Enter an amount from 0 to 10,000,000.", "请输入 0 到 10,000,000 之间的金额。")]
        return None
    return bill.quantize(decimal.Decimal("0.01"))


def _key(form: dict, errors: dict) -> str:
    key = (form.get("request_key") or "").strip()
    if not key or len(key) > 40 or not key.isalnum():
        errors["_form"] = [text("The form expired; open the page again.", "表单已失效，请重新打开页面。")]
    return key


@portal_blueprint.route("/redeem", methods=["POST"])
def redeem():
    actor = require_actor()
    services = _services()
    merchant_id = merchant_of(services, actor)
    form = request.form.to_dict()
    q = (form.get("q") or "").strip()
    errors: dict = {}
    key = _key(form, errors)
    bill = _bill(form.get("bill"), errors)
    member = find_member(services, q)
    if member is None:
        errors["_form"] = [text("Verify the member first.", "请先验证会员。")]
    try:
        offer_id = int(form.get("offer", ""))
    except ValueError:
        offer_id = 0
        errors["_form"] = [text("Choose an offer.", "请选择优惠。")]
    if errors:
        return _page(services, actor, q=q, errors=errors, form=form, status=422)
    try:
        res = redeem_offer(services, merchant_id=merchant_id, offer_id=offer_id, member_id=member["id"], actor=as_app(actor),
                           key=f"{actor.id}-{key[:20]}", bill=bill)
    except (OfferRefused, LedgerRefused, ValidationFailed) as exc:
        return _page(services, actor, q=q, errors={"_form": [exc.message]}, form=form, status=409)
    msg = text("Redeemed: benefit ¥{benefit}, {points} points used.", "核销成功：优惠 ¥{benefit}，使用 {points} 积分。", benefit=res.benefit,
               points=res.points)
    flash(localize(msg, current_locale()), "success")
    return redirect(url_for("alliance_portal.home", q=q))


@portal_blueprint.route("/purchase", methods=["POST"])
def purchase():
    actor = require_actor()
    services = _services()
    merchant_id = merchant_of(services, actor)
    form = request.form.to_dict()
    q = (form.get("q") or "").strip()
    errors: dict = {}
    key = _key(form, errors)
    amount = _bill(form.get("amount"), errors)
    if amount is None or amount <= 0:
        errors.setdefault("amount", [text("Enter the amount the member paid.", "请输入会员消费金额。")])
    member = find_member(services, q)
    if member is None:
        errors["_form"] = [text("Verify the member first.", "请先验证会员。")]
    if errors:
        return _page(services, actor, q=q, errors=errors, form=form, status=422)
    ref = f"P-{actor.id}-{key[:20]}"
    found = services.queries.list("alliance.purchase", as_app(actor), filter={"field": "ref", "op": "eq", "value": ref}, limit=1, labels=False,
                                  count="none").rows
    if not found:
        services.records.create("alliance.purchase", {"ref": ref, "merchant": merchant_id, "member": member["id"], "amount": str(amount),
                                                      "purchased_at": dt.datetime.now(dt.timezone.utc).isoformat()}, as_app(actor))
        found = services.queries.list("alliance.purchase", as_app(actor), filter={"field": "ref", "op": "eq", "value": ref}, limit=1, labels=False,
                                      count="none").rows
    flash(localize(text("Purchase recorded: {points} points earned.", "消费已登记：获得 {points} 积分。", points=found[0].get("points") or 0),
                   current_locale()), "success")
    return redirect(url_for("alliance_portal.home", q=q))
