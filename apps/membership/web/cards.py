"""Card actions on the member's page: a panel (htmx) with the card number and status, a button per action the
card's status allows, each opening a dialog that asks for the reason (CSRF-protected POST, also without JavaScript),
and the member's card history. Only users who may update the member see the buttons; the action checks again."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from crmkit.runtime.errors import CrmkitError, RecordNotFound, ValidationFailed
from crmkit.runtime.i18n_text import localize, text
from crmkit.runtime.web.i18n import current_locale
from crmkit.runtime.web.record_views import local_time
from crmkit.runtime.web.views import require_actor

from .. import card_pool
from ..card_actions import ACTIONS, LABELS, card_action

cards_blueprint = Blueprint("membership_cards", __name__, url_prefix="/membership/cards",
                            template_folder=str(Path(__file__).parent / "templates"))
MEMBER = "membership.member"
STATUS = {"active": ("Active", "正常", "#10b981"), "lost": ("Reported lost", "挂失", "#f59e0b"), "cancelled": ("Cancelled", "已注销", "#94a3b8")}
HISTORY_LABELS = {"issued": ("Issued", "发卡"), "report_lost": ("Reported lost", "挂失"), "unfreeze": ("Unfrozen", "解挂"),
                  "reissue": ("Reissued", "补卡"), "cancel": ("Cancelled", "注销")}


def _panel(record_id: int, *, errors: dict | None = None, open_dialog: str | None = None, form: dict | None = None, status: int = 200):
    actor = require_actor()
    services = current_app.extensions["crmkit"]
    member = services.queries.get(MEMBER, record_id, actor)
    card_status = member.get("status") or "active"
    can_act = services.policy.allows(actor, services.store.catalog().entity(MEMBER), "update")
    zh = current_locale() == "zh"
    actions = [(name, localize(LABELS[name], current_locale())) for name, spec in ACTIONS.items() if card_status in spec.sources] if can_act else []
    history = []
    if services.policy.allows(actor, services.store.catalog().entity("membership.card_history"), "read"):
        rows = services.queries.list("membership.card_history", actor, filter={"field": "member", "op": "eq", "value": record_id},
                                     sort=["-id"], limit=10, labels=False, count="none").rows
        for r in rows:
            en, cn = HISTORY_LABELS.get(r["action"], (r["action"], r["action"]))
            history.append({**r, "label": cn if zh else en, "when": local_time(r["created_at"])[:16]})
    en, cn, color = STATUS.get(card_status, (card_status, card_status, "#94a3b8"))
    return render_template("membership/card_panel.html", member=member, record_id=record_id, status_label=cn if zh else en, status_color=color,
                           card_status=card_status, actions=actions, history=history, errors=errors or {}, open_dialog=open_dialog,
                           form=form or {}, can_manage=_may_manage(services, actor)), status


@cards_blueprint.route("/member/<int:record_id>/panel")
def member_panel(record_id: int):
    return _panel(record_id)


@cards_blueprint.route("/member/<int:record_id>/<action>", methods=["POST"])
def run(record_id: int, action: str):
    actor = require_actor()
    services = current_app.extensions["crmkit"]
    form = {"reason": request.form.get("reason", ""), "card_no": request.form.get("card_no", "")}
    try:
        done = card_action(services, actor, record_id, action, form["reason"], card_no=form["card_no"].strip() or None)
    except ValidationFailed as exc:
        return _panel(record_id, errors=exc.field_errors, open_dialog=action, form=form, status=422)
    except CrmkitError as exc:
        if exc.status in (403, 404):
            raise
        return _panel(record_id, errors={"_form": [exc.message]}, open_dialog=action, form=form, status=409)
    msg = text("{action} done. Card {card}: {status}.", "已办理{action}。卡号 {card}：{status}。", action=LABELS[action], card=done["card_no"],
               status=STATUS.get(done["status"], ("", done["status"]))[1 if current_locale() == "zh" else 0])
    if request.headers.get("HX-Request"):
        return _panel(record_id)
    flash(localize(msg, current_locale()), "success")
    return redirect(url_for("crmkit_web.entity_detail", entity_key=MEMBER, record_id=record_id))


def _may_manage(services, actor) -> bool:
    try:
        card_pool.may_manage_cards(services, actor)
        return True
    except CrmkitError:
        return False


def _pool_page(services, actor, *, errors: dict | None = None, form: dict | None = None, status: int = 200):
    card_pool.may_manage_cards(services, actor)
    with services.engine.connect() as conn:
        mode, counts, batches = card_pool.card_mode(conn), card_pool.pool_counts(conn), card_pool.recent_batches(conn)
    for b in batches:
        b["when"] = local_time(b["created_at"])
    return render_template("membership/card_pool.html", mode=mode, counts=counts, batches=batches, errors=errors or {}, form=form or {}), status


@cards_blueprint.route("/pool")
def pool():
    return _pool_page(current_app.extensions["crmkit"], require_actor())


@cards_blueprint.route("/pool/<what>", methods=["POST"])
def pool_change(what: str):
    actor = require_actor()
    services = current_app.extensions["crmkit"]
    card_pool.may_manage_cards(services, actor)
    form = request.form.to_dict()
    form.pop("csrf_token", None)
    try:
        if what == "mode":
            card_pool.set_card_mode(services.engine, form.get("mode", ""), actor_id=actor.id)
            msg = text("Card numbers now come from: {mode}.", "卡号来源已设为：{mode}。",
                       mode={"pool": "card pool / 卡池", "sequence": "generated / 自动生成"}.get(form.get("mode"), ""))
        elif what == "batch":
            errors: dict = {}
            numbers = {}
            for key, default in (("start", None), ("count", None), ("digits", "8")):
                raw = (form.get(key) or default or "").strip()
                try:
                    numbers[key] = int(raw)
                except ValueError:
                    errors[key] = [text("Enter a whole number.", "请输入整数。")]
            if errors:
                raise ValidationFailed(errors)
            done = card_pool.generate_batch(services.engine, prefix=form.get("prefix", ""), check_digit=form.get("check_digit") == "on",
                                            actor_id=actor.id, **numbers)
            msg = text("{n} cards added to the pool ({skipped} already there).", "已向卡池添加 {n} 张卡（{skipped} 张已存在）。",
                       n=done["created"], skipped=done["skipped"])
        elif what == "special":
            card_pool.add_special(services.engine, form.get("card_no", ""), actor_id=actor.id)
            msg = text("Special number {no} added.", "已添加特殊卡号 {no}。", no=form.get("card_no", "").strip())
        else:
            raise RecordNotFound(text("There is no such page.", "没有这个页面。"))
    except ValidationFailed as exc:
        return _pool_page(services, actor, errors={f"{what}:{k}": v for k, v in exc.field_errors.items()}, form=form, status=422)
    flash(localize(msg, current_locale()), "success")
    return redirect(url_for("membership_cards.pool"))
