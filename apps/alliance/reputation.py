"""Internal rating with history, and member reviews after a redemption."""
from __future__ import annotations

import datetime as dt

from crmkit.runtime.actor import Actor
from crmkit.runtime.db import write_transaction
from crmkit.runtime.i18n_text import text

from .errors import OfferRefused
from .staff import MANAGER_ROLE, as_app, require_role


def rate_merchant(services, merchant_id: int, rating: int, *, actor: Actor, today: dt.date | None = None) -> int:
    """Set the internal rating (1–5) and append a rating_change row in the same transaction."""
    require_role(services, actor, MANAGER_ROLE)
    if not isinstance(rating, int) or isinstance(rating, bool) or not 1 <= rating <= 5:
        raise OfferRefused(text("A rating is a whole number from 1 to 5.", "评级为 1 到 5 的整数。"))
    services.queries.get("alliance.merchant", merchant_id, actor)  # visible to the actor
    app = as_app(actor)
    with write_transaction(services.engine) as conn:
        # ``rating`` is read-only in forms; like a transition field it is written through the restricted write path
        current = services.records.lock_for_transition(conn, "alliance.merchant", merchant_id)
        services.records.write_transition(conn, "alliance.merchant", current, current["workflow_state"], {"rating": rating}, ("rating",), app)
        return services.records.create_within(conn, "alliance.rating_change", {
            "merchant": merchant_id, "old_rating": current.get("rating"), "new_rating": rating,
            "changed_on": (today or dt.date.today()).isoformat()}, app)


def review_redemption(services, redemption_id: int, score: int, comment: str, *, actor: Actor, today: dt.date | None = None) -> int:
    """A member's review after a redemption (one per redemption)."""
    r = services.queries.get("alliance.redemption", redemption_id, as_app(actor))
    if r.get("status") != "done":
        raise OfferRefused(text("Only a completed redemption can be reviewed.", "只能评价已完成的核销。"))
    return services.records.create("alliance.review", {"merchant": r["merchant"], "redemption": redemption_id, "member": r["member"], "score": score,
                                                       "comment": (comment or "").strip() or None,
                                                       "reviewed_on": (today or dt.date.today()).isoformat()}, actor)
