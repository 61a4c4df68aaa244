"""What joining and cards plug into the runtime (called from ``hooks.register``): the application checks, the
member's consent boxes kept as real consents, the card pool tables, the roles, the public join form, the card panel and the named card actions."""
from __future__ import annotations

from crmkit.runtime.packages import AppHooks

from . import card_pool
from .card_actions import card_action
from .card_pool import may_manage_cards as _may_manage_cards
from .consent_sync import sync_consents
from .demo_join import seed_joining
from .joining import check_application
from .roles import install_roles


def register_joining(hooks: AppHooks) -> AppHooks:
    hooks.tables(card_pool.metadata)
    hooks.on_record_written("membership.application", check_application)
    hooks.on_record_written("membership.member", sync_consents)  # the tick boxes are real consents (consent_sync.py)
    hooks.roles(install_roles)
    hooks.demo_seeder(seed_joining)
    for name in ("report_lost", "unfreeze", "reissue", "cancel"):
        hooks.action(f"card.{name}")(_card_action(name))
    hooks.action("cards.set_mode")(set_mode)
    hooks.action("cards.generate_batch")(generate_batch)
    hooks.action("cards.add_special")(add_special)
    from .web.cards import cards_blueprint
    from .web.join import join_blueprint

    hooks.blueprint(join_blueprint)
    hooks.blueprint(cards_blueprint)
    hooks.detail_panel("membership.member", "membership_cards.member_panel", en="Membership card", zh="会员卡")
    return hooks


def _card_action(name: str):
    def run(services, actor, payload: dict) -> dict:
        """``{"member": id, "reason": "...", "card_no": optional special pool number for a reissue}``"""
        return card_action(services, actor, int(payload["member"]), name, payload.get("reason", ""), card_no=payload.get("card_no"))
    run.__name__ = f"card_{name}"
    return run


def set_mode(services, actor, payload: dict) -> dict:
    """``{"mode": "sequence" | "pool"}``"""
    _may_manage_cards(services, actor)
    return {"mode": card_pool.set_card_mode(services.engine, payload.get("mode", ""), actor_id=actor.id)}


def generate_batch(services, actor, payload: dict) -> dict:
    """``{"prefix", "start", "count", "digits" (8), "check_digit" (false)}``"""
    _may_manage_cards(services, actor)
    return card_pool.generate_batch(services.engine, prefix=payload.get("prefix", ""), start=payload.get("start"), count=payload.get("count"),
                                     digits=payload.get("digits", 8), check_digit=bool(payload.get("check_digit")), actor_id=actor.id)


def add_special(services, actor, payload: dict) -> dict:
    """``{"card_no": "88888888"}``"""
    _may_manage_cards(services, actor)
    return {"id": card_pool.add_special(services.engine, payload.get("card_no", ""), actor_id=actor.id)}
