"""Merchant staff: which merchant a portal user works for, their roles, and what they may see of a member.

The user → merchant mapping is the merchant's ``staff`` child table (one row per portal user). Row scoping uses the
existing permissions package without new platform code: each merchant gets its own role ``Merchant Staff · <code>``
holding read access to the alliance entities with a custom row scope ``merchant = <id>`` (``id = <id>`` on the
merchant itself). A staff user holds that role plus the shared ``Merchant Staff`` role, which carries no entity
rights and exists for workflow permissions (a merchant confirms its settlement statement). Merchant staff hold no
right on members at all: the portal looks a member up by exact card number or mobile and shows masked data only.

Counter writes (a redemption, a purchase) are authorised here — the actor must be staff of an active merchant —
and then written through the record service with the actor's id and ``as_app`` rights, so the records' limits and
ledger postings cannot be bypassed by writing the entities directly through the API.
"""
from __future__ import annotations

import dataclasses

from sqlalchemy import or_, select

from crmkit.runtime.actor import Actor
from crmkit.runtime.audit import record_event
from crmkit.runtime.i18n_text import text
from crmkit.runtime.permissions.masking import mask_value

from .errors import NotMerchantStaff

SHARED_ROLE = "Merchant Staff"
MANAGER_ROLE = "Alliance Manager"
FINANCE_ROLE = "Alliance Finance"
# entity → row-scope field pointing at the merchant (None: the entity is the merchant itself)
SCOPED = {"alliance.merchant": None, "alliance.offer": "merchant", "alliance.redemption": "merchant", "alliance.purchase": "merchant",
          "alliance.settlement": "merchant", "alliance.review": "merchant"}


def merchant_role_name(code: str) -> str:
    return f"{SHARED_ROLE} · {code}"


def merchant_of(services, actor: Actor) -> int:
    """The merchant the actor works for (the portal never takes it from the request)."""
    tables = services.records.table_cache.tables(services.store.catalog())
    staff, merchants = tables["alliance.merchant_staff"], tables["alliance.merchant"]
    with services.engine.connect() as c:
        rows = c.execute(select(staff.c.parent_id).join(merchants, merchants.c.id == staff.c.parent_id)
                         .where(staff.c.user == actor.id, merchants.c.deleted_at.is_(None))).scalars().all()
    if actor.id is None or len(set(rows)) != 1:
        raise NotMerchantStaff(text("This page is for merchant staff; your account is not linked to exactly one merchant.",
                                    "此页面供联盟商家员工使用；你的账号未关联（或关联了多个）商家。"))
    return int(rows[0])


def require_role(services, actor: Actor, *names: str) -> None:
    """Refuse unless the actor is an administrator or holds one of the named roles (directly or through a post)."""
    if actor.is_admin:
        return
    from crmkit.runtime.errors import PermissionDenied
    from crmkit.runtime.org.grants import resolve_grants

    with services.engine.connect() as c:
        held = resolve_grants(c, actor.id).role_names if actor.id is not None else frozenset()
    if not set(names) & set(held):
        raise PermissionDenied(text("Only {roles} may do this.", "只有{roles}可以执行此操作。", roles=" / ".join(names)))


def is_staff(services, actor: Actor) -> bool:
    """Whether the actor works for exactly one merchant (the portal link in the sidebar)."""
    try:
        merchant_of(services, actor)
    except NotMerchantStaff:
        return False
    return True


def as_app(actor: Actor) -> Actor:
    """The actor, with the app's own rights for a write the app has already authorised (the audit keeps the user id)."""
    return dataclasses.replace(actor, is_admin=True)


def masked_member(row: dict, level_name: str | None) -> dict:
    """What counter staff see of a member: masked name, mobile and card number, the level and the card status."""
    card = str(row.get("card_no") or "")
    return {"id": row["id"], "name": mask_value("name", row.get("name")), "mobile": mask_value("mobile", row.get("mobile")),
            "card_no": card[:2] + "*" * max(len(card) - 6, 0) + card[-4:] if len(card) > 6 else mask_value("mobile", card),
            "level": level_name, "level_id": row.get("level"), "status": row.get("status")}


def find_member(services, query: str) -> dict | None:
    """A member by exact card number or mobile (no partial matches: staff cannot browse members)."""
    q = (query or "").strip()
    if not q or len(q) > 40:
        return None
    tables = services.records.table_cache.tables(services.store.catalog())
    m, lv = tables["membership.member"], tables["membership.level"]
    with services.engine.connect() as c:
        row = c.execute(select(m).where(or_(m.c.card_no == q, m.c.mobile == q), m.c.deleted_at.is_(None)).order_by(m.c.id).limit(1)).mappings().first()
        if row is None:
            return None
        level = c.execute(select(lv.c.name).where(lv.c.id == row["level"])).scalar() if row["level"] else None
    return masked_member(dict(row), level)


def link_staff(services, merchant_id: int, user_id: int, *, actor: Actor) -> int:
    """Give ``user_id`` portal access to ``merchant_id``: the merchant's scoped role and the shared role.

    Returns the merchant role's id. The caller adds the user to the merchant's ``staff`` rows (the mapping)."""
    from crmkit.runtime.db import write_transaction
    from crmkit.runtime.org.tables import ab_user_role
    from crmkit.runtime.permissions.admin import PermissionAdmin, ensure_role

    merchant = services.queries.get("alliance.merchant", merchant_id, actor)
    catalog = services.store.catalog()
    with write_transaction(services.engine) as conn:
        role_id = ensure_role(conn, merchant_role_name(merchant["code"]))
        shared = ensure_role(conn, SHARED_ROLE)
        for rid in (role_id, shared):
            held = conn.execute(select(ab_user_role.c.id).where(ab_user_role.c.user_id == user_id, ab_user_role.c.role_id == rid)).first()
            if not held:
                conn.execute(ab_user_role.insert().values(user_id=user_id, role_id=rid))
        record_event(conn, category="permission", action="staff_linked", actor_id=actor.id, entity="alliance.merchant", record_id=merchant_id,
                     changes={"user": user_id, "roles": [role_id, shared]})
    perms = PermissionAdmin(services.engine, services.policy.rules, services.store.catalog)
    for key, field in SCOPED.items():
        entity = catalog.entity(key)
        perms.set_actions(role_id, entity, {"read"}, actor_id=actor.id)
        scope = {"field": "id", "op": "eq", "value": merchant_id} if field is None else {"field": field, "op": "eq", "value": merchant_id}
        perms.set_row_scope(role_id, entity, "custom", scope, actor_id=actor.id)
    return role_id
