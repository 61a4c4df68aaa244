"""Card actions (卡务): report lost (挂失), unfreeze (解挂), reissue with a new number (补卡), cancel the account (注销).

Each is one ``RecordService.update`` of the member — the card number is read-only and the status read-only for the
template roles; this module sets both (``assigned``) — with a ``membership.card_history`` row in the same transaction (the old
and new number, the status before and after, the reason) and an audit event ``card_<action>`` naming the reason.
The record service's own audit entry has the field changes. Why not a workflow on the status field: a reissue
draws a new number, and the history must keep the old one, which a state machine alone would not record.

A lost or cancelled card cannot earn or redeem points: ``card_guard.CARD_CHECK`` is the ledger's member check.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import Connection

from crmkit.runtime.audit import record_event
from crmkit.runtime.errors import CrmkitError, ValidationFailed
from crmkit.runtime.i18n_text import text
from crmkit.runtime.records.service import next_sequence

from .card_pool import bind, card_mode, draw

MEMBER = "membership.member"
HISTORY = "membership.card_history"


@dataclass(frozen=True)
class CardAction:
    name: str
    sources: tuple[str, ...]
    target: str
    new_number: bool = False


ACTIONS = {
    "report_lost": CardAction("report_lost", ("active",), "lost"),
    "unfreeze": CardAction("unfreeze", ("lost",), "active"),
    "reissue": CardAction("reissue", ("active", "lost"), "active", new_number=True),
    "cancel": CardAction("cancel", ("active", "lost"), "cancelled"),
}
LABELS = {"report_lost": text("Report lost", "挂失"), "unfreeze": text("Unfreeze", "解挂"), "reissue": text("Reissue card", "补卡"),
          "cancel": text("Cancel account", "注销")}


class CardActionRefused(CrmkitError):
    code = "card_action_refused"
    status = 409


def card_action(services, actor, member_id: int, action: str, reason: str, *, card_no: str | None = None, request_id: str | None = None) -> dict:
    """Run one card action for a member the actor can see and update; returns {"status", "card_no", "old_card_no"}."""
    spec = ACTIONS.get(action)
    if spec is None:
        raise ValidationFailed({"action": [text("Unknown card action {a}; use one of {all}.", "未知的卡务操作 {a}，可选：{all}。",
                                                a=action, all=", ".join(ACTIONS))]})
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed({"reason": [text("Give a reason for this card action.", "请填写办理原因。")]})
    if len(reason) > 1000:
        raise ValidationFailed({"reason": [text("Keep the reason under 1000 characters.", "原因请不超过 1000 个字符。")]})
    member = services.queries.get(MEMBER, member_id, actor)  # 404 outside the actor's row scope
    status = member.get("status") or "active"
    if status not in spec.sources:
        raise CardActionRefused(text("{action} is not possible for a card that is {status}.", "卡状态为“{status}”时不能{action}。",
                                     action=LABELS[action], status=status))
    old_no = member.get("card_no")
    result: dict = {"status": spec.target, "old_card_no": old_no, "card_no": old_no}
    system = replace(actor, is_admin=True)  # the history row is part of the action the actor is allowed to take

    def assigned(conn: Connection) -> dict:
        values = {"status": spec.target}
        if spec.new_number:
            result["card_no"] = values["card_no"] = new_card_number(services, conn, card_no)
        return values

    def within(conn: Connection) -> None:
        if spec.new_number and card_mode(conn) == "pool":
            bind(conn, result["card_no"], member_id)
        write_history(services.records, conn, system, member_id, action, old_no, result["card_no"] if spec.new_number else None,
                      status, spec.target, reason, request_id=request_id)
        record_event(conn, category="record", action=f"card_{action}", actor_id=actor.id, entity=MEMBER, record_id=member_id,
                     changes={"reason": reason, "status": [status, spec.target], "card_no": [old_no, result["card_no"]]}, request_id=request_id)

    services.records.update(MEMBER, member_id, {}, actor, expected_version=member["row_version"], request_id=request_id,
                            within=within, assigned=assigned)
    return result


def new_card_number(services, conn: Connection, card_no: str | None = None) -> str:
    """The next card number: a pool card in pool mode (``card_no`` picks a free special number), else the sequence."""
    if card_mode(conn) == "pool":
        return draw(conn, card_no=card_no)
    catalog = services.store.catalog()
    entity = catalog.entity(MEMBER)
    f = entity.field("card_no")
    return catalog.type_of(f).format(f, next_sequence(conn, f"{entity.key}.{f.id}", int(f.opt("start", 1))))


def write_history(records, conn: Connection, actor, member_id: int, action: str, card_no: str, new_card_no: str | None,
                  before: str | None, after: str, reason: str, *, request_id: str | None = None) -> int:
    data = {"member": member_id, "action": action, "card_no": card_no or "-", "new_card_no": new_card_no,
            "status_before": before, "status_after": after, "reason": reason}
    return records.create_within(conn, HISTORY, data, actor, request_id=request_id)
