"""Joint activities (联合活动): alliance merchants attached to membership activities (invited, participating,
declined), with per-merchant results (members served, redemptions, contribution).

The link is the alliance template's own entity ``alliance.activity_merchant`` pointing at ``membership.activity``;
membership knows nothing of it. ``join_key`` = ``<activity>:<merchant>`` (unique, set by a validator) keeps one row
per merchant and activity. The activity page shows the merchants through a detail panel this app registers."""
from __future__ import annotations

from crmkit.runtime.actor import Actor
from crmkit.runtime.records.hooks import RecordWrite

LINK = "alliance.activity_merchant"
ACTIVITY = "membership.activity"


def join_key(write: RecordWrite):
    activity, merchant = write.get("activity"), write.get("merchant")
    if activity is not None and merchant is not None:
        write.values["join_key"] = f"{int(activity)}:{int(merchant)}"
    return None


def attach(services, activity_id: int, merchant_id: int, actor: Actor, *, status: str = "invited", **fields) -> int:
    """Attach a merchant to an activity (or change its status when already attached); returns the link id."""
    services.queries.get(ACTIVITY, activity_id, actor)
    found = services.queries.list(LINK, actor, filter={"field": "join_key", "op": "eq", "value": f"{activity_id}:{merchant_id}"}, limit=1,
                                  labels=False, count="none").rows
    data = {"status": status, **fields}
    if found:
        services.records.update(LINK, found[0]["id"], data, actor, expected_version=found[0]["row_version"])
        return found[0]["id"]
    return services.records.create(LINK, {"activity": activity_id, "merchant": merchant_id, **data}, actor)


def merchants_of(services, activity_id: int, actor: Actor) -> list[dict]:
    """The merchants attached to an activity, as ``actor`` may see them."""
    return services.queries.list(LINK, actor, filter={"field": "activity", "op": "eq", "value": activity_id}, sort=["id"], limit=100,
                                 count="none").rows
