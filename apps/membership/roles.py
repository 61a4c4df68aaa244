"""The membership template's roles, created at install (``AppHooks.roles``) through ``PermissionAdmin``.

Entity actions, field rules and row scopes are set to exactly what ``ROLES`` says, so installing again changes
nothing (PermissionAdmin writes and audits only differences). Roles an administrator renamed are created again.

- 前台 Front Desk — members, applications, orders, card actions (update on members); coupons read and update,
  which is what redeeming a code at the desk needs (``coupons.redeem`` checks update), and coupon templates read.
- Membership Reviewer / Membership Manager — the join workflow's reviewers and approvers (names used by
  workflows/application.json); the manager also overrides flagged duplicates.
- Marketing — levels, points plans, rewards; members read and export.
- Store Manager — their store's members, applications and orders: row scope ``org_subtree`` (the member's org unit
  is its store's unit, see workflow_actions.create_member).
- Auditor — read-only on every membership entity (coupons, level history and lifecycle parameters included), may
  export members; personal fields of members and applications ``masked``: the Auditor reads 138****5678,
  110101********8515, ********** for a birthday, on every surface (lists, record pages, API, exports, history), and
  can neither unmask them nor filter, sort or group by them (search finds them only by the exact value). The mask is the Auditor's field rule, not the field's, so everyone
  else (and system reads: an SMS automation gets the real mobile) is unaffected. The member's name stays readable as
  the record title.

Every role that may update members has the member's ``status`` read-only: card status changes go through the card
actions (reason, history). Likewise every coupon field is read-only for the roles: a coupon changes only by being
redeemed (checks, order, store) or voided (reason), which authorize their own writes (``coupons.as_issuer``), so a
clerk cannot mark a code used or unused by editing it. Administrators can still edit both directly (bulk edits,
imports of legacy data).
"""
from __future__ import annotations


from crmkit.runtime.permissions.admin import PermissionAdmin

R, RW, RWD = ("read",), ("read", "create", "update"), ("read", "create", "update", "delete")
ENTITIES = ("member", "application", "card_history", "level", "order", "store", "points_plan", "point_item", "reward_item", "coupon",
            "coupon_template", "level_change", "lifecycle_setting")
PERSONAL = {"member": ("mobile", "id_number", "birthday", "email", "address"), "application": ("mobile", "id_number", "birthday")}
# The card status changes only through the card actions (which need a reason and keep history) for the template's roles.
CARD_STATUS_READ_ONLY = {"member": {"status": ("read_only", False)}}
# Entities whose records change only through their operations (redeem, void), never by editing: all fields read-only.
ACTION_ONLY = ("coupon",)

ROLES: dict[str, dict] = {
    "Front Desk": {"actions": {"member": RW, "application": RW, "card_history": ("read", "create"), "order": RW, "level": R, "store": R,
                               "reward_item": R, "coupon": ("read", "update"), "coupon_template": R}},
    "Membership Reviewer": {"actions": {"application": RW, "member": R, "card_history": R, "level": R, "store": R}},
    "Membership Manager": {"actions": {"application": RWD, "member": (*RWD, "export"), "card_history": R, "level": RW, "order": R, "store": R,
                                       "points_plan": R, "point_item": R, "reward_item": R}},
    "Marketing": {"actions": {"member": ("read", "export"), "application": R, "level": RW, "points_plan": RW, "point_item": RW,
                              "reward_item": RW, "order": R, "store": R}},
    "Store Manager": {"actions": {"member": RW, "application": RW, "order": RW, "card_history": ("read", "create"), "level": R, "store": R},
                      "scopes": {"member": "org_subtree", "application": "org_subtree", "order": "org_subtree"}},
    "Auditor": {"actions": {**{e: R for e in ENTITIES}, "member": ("read", "export")}, "fields": PERSONAL},
}


def install_roles(services, actor) -> dict[str, int]:
    """Create or align the roles; returns role name → id."""
    catalog = services.store.catalog()
    admin = PermissionAdmin(services.engine, services.policy.rules, services.store.catalog)
    ids = {}
    for name, spec in ROLES.items():
        role_id = admin.ensure_role(name)
        ids[name] = role_id
        for ent in ENTITIES:
            entity = catalog.entity(f"membership.{ent}")
            actions = spec["actions"].get(ent, ())
            admin.set_actions(role_id, entity, actions, actor_id=actor.id, create_missing=True)
            admin.set_row_scope(role_id, entity, spec.get("scopes", {}).get(ent, "all"), actor_id=actor.id)
            # The Auditor reads these masked (earlier installs hid them; installing again moves them to masked).
            rules = {f: ("masked", False) for f in spec.get("fields", {}).get(ent, ())}
            if "update" in actions:
                rules.update(CARD_STATUS_READ_ONLY.get(ent, {}))
                if ent in ACTION_ONLY:
                    rules.update({f.name: ("read_only", False) for f in entity.fields})
            if rules:
                admin.set_field_rules(role_id, entity, rules, actor_id=actor.id)
    return ids
