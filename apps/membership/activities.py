"""Member activities (活动管理): invitations to a segment, registrations, check-in at the door, activity points
through the points ledger, and the evaluation.

Registrations are ``membership.activity_registration`` records, one per activity and member: ``reg_key`` =
``<activity>:<member>`` is a unique field set by a validator, so however a registration is written (form, API,
import, these functions) a member cannot appear twice, even when two clerks check the same member in at once.

Points are posted by ``award_points`` with the ledger key ``activity:<activity>:member:<member>``: the ledger's
unique idempotency key (looked up after the member's row lock) makes a re-run, or two runs at the same moment,
post each attendee's points once. The registration then records the entry and the points (a rollup sums them
into the activity's ``points_issued``).
"""
from __future__ import annotations

import datetime as dt
import decimal

from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.errors import CrmkitError, StaleRecord, ValidationFailed
from crmkit.runtime.i18n_text import text
from crmkit.runtime.privacy.consent import has_consent
from crmkit.runtime.db import read_transaction
from crmkit.runtime.records.hooks import RecordWrite

from .assign import set_fields
from . import segments
from .ledger import LedgerService
from .ledger.errors import LedgerRefused

ACTIVITY = "membership.activity"
REG = "membership.activity_registration"
MEMBER = "membership.member"
ORDER = "membership.order"
ADDRESS = {"sms": "mobile", "wechat": "mobile", "email": "email"}
PAGE = 200
D = decimal.Decimal


class CheckInRefused(CrmkitError):
    code = "check_in_refused"
    status = 409
    default_message = text("The member cannot be checked in.", "无法为该会员签到。")


class MemberNotFound(CheckInRefused):
    code = "member_not_found"
    status = 404


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def registration_key(write: RecordWrite):
    """Validator: ``reg_key`` is always ``<activity>:<member>`` (a unique field: one registration per member and activity)."""
    activity, member = write.get("activity"), write.get("member")
    if activity is not None and member is not None:
        write.values["reg_key"] = f"{int(activity)}:{int(member)}"
    return None


def _registration(services, activity_id: int, member_id: int) -> dict | None:
    rows = services.queries.list(REG, SYSTEM, filter={"field": "reg_key", "op": "eq", "value": f"{activity_id}:{member_id}"}, limit=1,
                                 labels=False, count="none").rows
    return rows[0] if rows else None


def _rows(services, entity: str, actor: Actor, tree, fields: list[str]) -> list[dict]:
    out: list[dict] = []
    cursor = None
    while True:
        page = services.queries.list(entity, actor, filter=tree, fields=fields, sort=["id"], cursor=cursor, limit=PAGE, labels=False, count="none")
        out += page.rows
        if not page.next_cursor:
            return out
        cursor = page.next_cursor


# -- invitations and registrations ----------------------------------------------------------------------
def invite(services, activity_id: int, actor: Actor) -> dict:
    """Invite every member of the activity's target segment (as ``actor`` sees it): an ``invited`` registration per
    member, and the invitation message on the activity's channel to those who consented. Members already on the
    list are left alone, so inviting again reaches only members new to the segment."""
    services.policy.check(actor, services.store.catalog().entity(REG), "create")
    act = services.queries.get(ACTIVITY, activity_id, actor)
    if not act.get("segment"):
        raise ValidationFailed({"segment": [text("Choose the activity's target segment first.", "请先选择活动的目标分群。")]})
    counts = {"invited": 0, "messaged": 0, "no_consent": 0, "already": 0}
    for member_id in segments.member_ids(services, int(act["segment"]), actor):
        if _registration(services, activity_id, member_id) is not None:
            counts["already"] += 1
            continue
        try:
            reg_id = services.records.create(REG, {"activity": activity_id, "member": member_id, "status": "invited",
                                                   "invited_at": utcnow().isoformat()}, actor)
        except ValidationFailed as exc:
            if "reg_key" in exc.field_errors:  # invited by a concurrent run
                counts["already"] += 1
                continue
            raise
        counts["invited"] += 1
        if act.get("invitation"):
            sent = _send_invitation(services, act, member_id, reg_id, actor)
            counts["messaged" if sent else "no_consent"] += 1
    return counts


def _send_invitation(services, act: dict, member_id: int, reg_id: int, actor: Actor) -> bool:
    channel = act.get("channel") or "sms"
    member = services.queries.get(MEMBER, member_id, SYSTEM)
    address = member.get(ADDRESS[channel])
    with read_transaction(services.engine) as conn:
        if not address or not has_consent(conn, MEMBER, member_id, channel):
            return False
    starts = act["starts_at"].astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d %H:%M") if act.get("starts_at") else ""
    delivery = services.messaging.send(channel, to=address, actor=actor, subject_ref=(MEMBER, member_id), subject=act["title"], body=act["invitation"],
                                       context={"name": member.get("name") or "", "title": act["title"], "starts_at": starts,
                                                "place": act.get("place") or ""})
    set_fields(services, REG, reg_id, SYSTEM, assigned={"delivery_id": delivery["id"]})
    return delivery["status"] != "refused"


def register(services, activity_id: int, member_id: int, actor: Actor) -> int:
    """A member signs up (an invited member, or anyone): returns the registration id. Registering twice changes nothing."""
    services.queries.get(ACTIVITY, activity_id, actor)
    services.queries.get(MEMBER, member_id, actor)
    now = utcnow().isoformat()
    reg = _registration(services, activity_id, member_id)
    if reg is None:
        return services.records.create(REG, {"activity": activity_id, "member": member_id, "status": "registered", "registered_at": now}, actor)
    if reg["status"] in ("invited", "cancelled"):
        services.records.update(REG, reg["id"], {"status": "registered", "registered_at": now}, actor, expected_version=reg["row_version"])
    return reg["id"]


# -- check-in --------------------------------------------------------------------------------------------
def find_member(services, actor: Actor, *, card_no: str | None = None, mobile: str | None = None) -> tuple[dict, str]:
    """The member with this card number or mobile as ``actor`` sees them, and which one matched."""
    card_no, mobile = (card_no or "").strip().upper(), (mobile or "").strip().replace(" ", "").replace("-", "")
    if not card_no and not mobile:
        raise ValidationFailed({"card_no": [text("Enter a card number or a mobile number.", "请输入会员卡号或手机号。")]})
    field, value, method = ("card_no", card_no, "card") if card_no else ("mobile", mobile, "mobile")
    rows = services.queries.list(MEMBER, actor, filter={"field": field, "op": "eq", "value": value}, limit=1, labels=False, count="none").rows
    if not rows:
        if method == "card":
            raise MemberNotFound(text("No member has card number {v}.", "没有卡号为 {v} 的会员。", v=value))
        raise MemberNotFound(text("No member has mobile number {v}.", "没有手机号为 {v} 的会员。", v=value))
    return rows[0], method


def check_in(services, activity_id: int, actor: Actor, *, card_no: str | None = None, mobile: str | None = None,
             now: dt.datetime | None = None) -> dict:
    """Front desk check-in by card number or mobile. A registered or invited member is marked attended; a walk-in
    gets a registration at the door. A second check-in is refused and says when the first one was."""
    act = services.queries.get(ACTIVITY, activity_id, actor)
    if act.get("status") == "cancelled":
        raise CheckInRefused(text("The activity {title} was cancelled.", "活动“{title}”已取消。", title=act["title"]))
    member, method = find_member(services, actor, card_no=card_no, mobile=mobile)
    if member.get("status") == "cancelled":
        raise CheckInRefused(text("Member {name}'s card is cancelled.", "会员 {name} 的卡已注销。", name=member["name"]))
    now = now or utcnow()
    values = {"status": "attended"}
    assigned = {"checked_in_at": now, "checked_in_by": actor.id if actor.id and actor.id > 0 else None, "check_in_method": method}
    reg = _registration(services, activity_id, member["id"])
    try:
        if reg is None:
            reg_id = _create(services, activity_id, member["id"], now, actor, assigned)
        else:
            _refuse_twice(reg, member)
            if not reg.get("registered_at"):
                values["registered_at"] = now.isoformat()
            reg_id = reg["id"]
            services.records.update(REG, reg_id, values, actor, expected_version=reg["row_version"], assigned=assigned)
    except (StaleRecord, ValidationFailed):  # checked in by another desk a moment ago: say so; anything else stands
        again = _registration(services, activity_id, member["id"])
        if again is not None:
            _refuse_twice(again, member)
        raise
    return {"registration": reg_id, "member": member["id"], "name": member["name"], "method": method}


def _create(services, activity_id: int, member_id: int, now: dt.datetime, actor: Actor, assigned: dict) -> int:
    """A walk-in: registered and attended at the door, in one record write."""
    with services.records.transaction() as tx:
        return services.records.create_within(tx.conn, REG, {"activity": activity_id, "member": member_id, "status": "attended",
                                                             "registered_at": now.isoformat()}, actor, assigned=assigned)


def _refuse_twice(reg: dict, member: dict) -> None:
    if reg.get("status") == "attended":
        at = reg.get("checked_in_at")
        when = at.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%H:%M") if isinstance(at, dt.datetime) else "—"
        raise CheckInRefused(text("{name} is already checked in (at {at}).", "{name} 已签到（{at}）。", name=member["name"], at=when))


# -- points ----------------------------------------------------------------------------------------------
def points_key(activity_id: int, member_id: int) -> str:
    return f"activity:{activity_id}:member:{member_id}"


def award_points(services, activity_id: int, actor: Actor) -> dict:
    """Post the activity's points to every attendee through the ledger, once per activity and member. The right to
    do it is the right to manage the activity (Marketing): the amount is the activity's, the members are its attendees."""
    services.policy.check(actor, services.store.catalog().entity(ACTIVITY), "update")
    act = services.queries.get(ACTIVITY, activity_id, actor)
    points = int(act.get("points") or 0)
    if points <= 0:
        raise ValidationFailed({"points": [text("Set the activity's attendance points first.", "请先设置活动的签到积分。")]})
    ledger = LedgerService(services.engine)
    counts = {"posted": 0, "already": 0, "refused": 0, "points": 0}
    attended = _rows(services, REG, actor, {"and": [{"field": "activity", "op": "eq", "value": activity_id},
                                                    {"field": "status", "op": "eq", "value": "attended"}]}, ["member", "points_entry"])
    for reg in attended:
        try:
            posted = ledger.earn(int(reg["member"]), points, key=points_key(activity_id, reg["member"]), actor=actor, source_type="activity",
                                 source_id=activity_id, memo=act["title"][:100])
        except LedgerRefused:  # e.g. the card was reported lost: no points, counted
            counts["refused"] += 1
            continue
        counts["posted" if posted.created else "already"] += 1
        if posted.created:
            counts["points"] += posted.amount
        if reg.get("points_entry") != posted.entry_id:
            set_fields(services, REG, reg["id"], SYSTEM, assigned={"points_entry": posted.entry_id, "points_awarded": posted.amount})
    return counts


# -- evaluation ------------------------------------------------------------------------------------------
def evaluate(services, activity_id: int, actor: Actor) -> dict:
    """Cost, attendance, points issued and the attendees' paid orders within ``follow_up_days`` of the start; the
    follow-up figures are kept on the activity (``follow_up_orders``, ``follow_up_amount``, ``evaluated_at``)."""
    act = services.queries.get(ACTIVITY, activity_id, actor)
    regs = _rows(services, REG, SYSTEM, {"field": "activity", "op": "eq", "value": activity_id},
                 ["member", "status", "invited_at", "registered_at", "points_awarded"])
    attendees = sorted({int(r["member"]) for r in regs if r["status"] == "attended"})
    start = act["starts_at"]
    end = start + dt.timedelta(days=int(act.get("follow_up_days") or 30))
    orders_n, amount = 0, D("0")
    for i in range(0, len(attendees), PAGE):
        tree = {"and": [{"field": "member", "op": "in", "value": attendees[i:i + PAGE]}, {"field": "payment_status", "op": "eq", "value": "paid"},
                        {"field": "ordered_at", "op": "gte", "value": start.isoformat()}, {"field": "ordered_at", "op": "lt", "value": end.isoformat()}]}
        for o in _rows(services, ORDER, SYSTEM, tree, ["amount", "refunded_amount"]):
            orders_n += 1
            amount += D(str(o["amount"] or 0)) - D(str(o.get("refunded_amount") or 0))
    registered = sum(1 for r in regs if r.get("registered_at"))
    attended = len(attendees)
    cost = D(str(act.get("cost") or 0))
    result = {
        "invited": sum(1 for r in regs if r.get("invited_at")), "registered": registered, "attended": attended,
        "attendance_rate": (D(attended) / D(registered)).quantize(D("0.0001")) if registered else None,
        "points_issued": sum(int(r.get("points_awarded") or 0) for r in regs), "cost": cost, "budget": D(str(act.get("budget") or 0)),
        "cost_per_attendee": (cost / attended).quantize(D("0.01")) if attended else None,
        "follow_up_orders": orders_n, "follow_up_amount": amount.quantize(D("0.01")),
    }
    if services.policy.allows(actor, services.store.catalog().entity(ACTIVITY), "update"):
        set_fields(services, ACTIVITY, activity_id, actor, assigned={"follow_up_orders": orders_n, "follow_up_amount": result["follow_up_amount"], "evaluated_at": utcnow()})
    return result
