"""Front-desk coupon redemption (enter a code → see the coupon → redeem it against an order or amount) and the
manual level change page. Reads go through the query service under the user's row scope; writes through
``coupons.redeem`` / ``levels.set_level`` (the record service). Every POST carries the CSRF token."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from crmkit.runtime.errors import CrmkitError, ValidationFailed
from crmkit.runtime.i18n_text import localize, text
from crmkit.runtime.web.i18n import current_locale
from crmkit.runtime.web.record_views import local_time
from crmkit.runtime.web.views import require_actor

from .. import coupons, levels

loyalty_blueprint = Blueprint("membership_loyalty", __name__, url_prefix="/membership",
                              template_folder=str(Path(__file__).parent / "templates"))
STATUS = {"issued": ("Not used", "未使用", "success"), "used": ("Used", "已使用", "info"), "expired": ("Expired", "已过期", "muted"),
          "void": ("Void", "已作废", "danger")}


def _services():
    return current_app.extensions["crmkit"]


def _coupon_view(c: dict | None) -> dict | None:
    if c is None:
        return None
    zh = current_locale() == "zh"
    tpl = c["_template"]
    en, cn, tone = STATUS.get(c["status"], (c["status"], c["status"], "muted"))
    if tpl.get("kind") == "rate":
        offer = f"{tpl.get('discount_rate') or 0}% " + ("减免" if zh else "off")
        if tpl.get("max_discount") not in (None, ""):
            offer += (f"，最高 {tpl['max_discount']} 元" if zh else f", at most {tpl['max_discount']}")
    else:
        offer = (f"减 {tpl.get('amount') or 0} 元" if zh else f"{tpl.get('amount') or 0} off")
    labels = c.get("_labels") or {}
    return {**c, "status_label": cn if zh else en, "status_tone": tone, "offer": offer, "template_name": tpl["name"],
            "member_label": labels.get("member") or f"#{c['member']}", "min_spend": tpl.get("min_spend"),
            "stores": ", ".join(tpl.get("store_codes") or []), "categories": ", ".join(tpl.get("categories") or []),
            "from": local_time(c.get("valid_from")), "until": local_time(c.get("valid_until")), "used": local_time(c.get("used_at")),
            "terms": tpl.get("description")}


def _stores(services, actor) -> list[dict]:
    if not services.policy.allows(actor, services.store.catalog().entity("membership.store"), "read"):
        return []
    return services.queries.list("membership.store", actor, limit=200, labels=False, count="none").rows


def _redeem_page(services, actor, *, code: str = "", errors: dict | None = None, form: dict | None = None, done=None, status: int = 200):
    coupon = None
    if code and not (errors or {}).get("code"):
        coupon = coupons.find(services, code, actor)
        if coupon is None:
            errors = {**(errors or {}), "code": [text("There is no coupon with code {code}.", "没有券码为 {code} 的优惠券。",
                                                      code=coupons.normalize_code(code))]}
            status = 404 if status == 200 else status
    # A coupon that cannot be used whatever the order (used, void, expired) says so instead of offering the form.
    refusal = coupons.unusable(coupon, coupons.utcnow()) if coupon is not None else None
    return render_template("membership/coupon_redeem.html", code=coupons.normalize_code(code), coupon=_coupon_view(coupon),
                           refusal=refusal.message if refusal else None, stores=_stores(services, actor), errors=errors or {},
                           form=form or {}, done=done), status


@loyalty_blueprint.route("/coupons/redeem")
def coupon_redeem():
    actor = require_actor()
    services = _services()
    services.policy.check(actor, services.store.catalog().entity(coupons.COUPON), "read")
    return _redeem_page(services, actor, code=request.args.get("code", ""))


@loyalty_blueprint.route("/coupons/redeem", methods=["POST"])
def coupon_redeem_post():
    actor = require_actor()
    services = _services()
    form = request.form.to_dict()
    code = form.get("code", "")
    errors: dict = {}
    order = store = None
    for name in ("order", "store"):
        raw = (form.get(name) or "").strip()
        if raw:
            try:
                value = int(raw)
            except ValueError:
                errors[name] = [text("Enter a record number.", "请输入记录编号。")]
                continue
            order, store = (value, store) if name == "order" else (order, value)
    if not (form.get("amount") or "").strip() and order is None:
        errors["amount"] = [text("Enter the order amount, or the order number.", "请输入消费金额或订单编号。")]
    if errors:
        return _redeem_page(services, actor, code=code, errors=errors, form=form, status=422)
    try:
        done = coupons.redeem(services, code, actor, amount=(form.get("amount") or "").strip() or None, order_id=order, store_id=store,
                              category=(form.get("category") or "").strip() or None)
    except ValidationFailed as exc:
        return _redeem_page(services, actor, code=code, errors=exc.field_errors, form=form, status=422)
    except CrmkitError as exc:
        if exc.status == 403:
            raise
        return _redeem_page(services, actor, code=code, errors={"_form": [exc.message]}, form=form, status=exc.status)
    flash(localize(text("Coupon {code} redeemed: {off} off, {pay} to pay.", "优惠券 {code} 已核销：抵扣 {off} 元，应付 {pay} 元。",
                        code=done.code, off=f"{done.discount:.2f}", pay=f"{done.pay:.2f}"), current_locale()), "success")
    return redirect(url_for("membership_loyalty.coupon_redeem", code=done.code))


@loyalty_blueprint.route("/levels/member/<int:record_id>", methods=["GET", "POST"])
def member_level(record_id: int):
    """Change a member's level by hand (a reason is required); the page lists the member's level history."""
    actor = require_actor()
    services = _services()
    member = services.queries.get(levels.MEMBER, record_id, actor)
    errors: dict = {}
    form = request.form.to_dict() if request.method == "POST" else {}
    status = 200
    if request.method == "POST":
        raw = (form.get("level") or "").strip()
        try:
            changed = levels.set_level(services, record_id, int(raw) if raw else None, form.get("reason", ""), actor)
        except ValueError:
            errors, status = {"level": [text("Choose a level.", "请选择等级。")]}, 422
        except ValidationFailed as exc:
            errors, status = exc.field_errors, 422
        except CrmkitError as exc:
            if exc.status == 403:
                raise
            errors, status = {"_form": [exc.message]}, exc.status
        else:
            flash(localize(text("Level changed.", "等级已调整。") if changed else text("The member is already at that level.", "会员已是该等级。"),
                           current_locale()), "success" if changed else "info")
            return redirect(url_for("membership_loyalty.member_level", record_id=record_id))
    level_rows = services.queries.list(levels.LEVEL, actor, sort=["level_value"], limit=100, labels=False, count="none").rows
    history = services.queries.list(levels.CHANGE, actor, filter={"field": "member", "op": "eq", "value": record_id}, sort=["-changed_at"],
                                    limit=100, count="none").rows
    for h in history:
        h["when"] = local_time(h.get("changed_at"))
    return render_template("membership/member_level.html", member=member, record_id=record_id, levels=level_rows, history=history,
                           errors=errors, form=form, today=dt.date.today()), status


@loyalty_blueprint.route("/member/<int:record_id>/loyalty-panel")
def member_panel(record_id: int):
    """The member page's panel: level (with a link to change it) and the member's unused coupons (each links to redemption)."""
    actor = require_actor()
    services = _services()
    member = services.queries.get(levels.MEMBER, record_id, actor)
    catalog = services.store.catalog()
    rows = []
    if services.policy.allows(actor, catalog.entity(coupons.COUPON), "read"):
        rows = services.queries.list(coupons.COUPON, actor, filter={"and": [{"field": "member", "op": "eq", "value": record_id},
                                                                              {"field": "status", "op": "eq", "value": "issued"}]},
                                     sort=["valid_until"], limit=10, count="exact").rows
        for r in rows:
            r["until"] = local_time(r.get("valid_until"))
    can_change = services.policy.allows(actor, catalog.entity(levels.MEMBER), "update")
    return render_template("membership/loyalty_panel.html", member=member, record_id=record_id, coupons=rows, can_change=can_change)
