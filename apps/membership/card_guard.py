"""The ledger's member check: no points are earned or redeemed on a lost (挂失) or cancelled (注销) card."""
from __future__ import annotations

from sqlalchemy import Column, Connection, DateTime, Integer, MetaData, String, Table, bindparam, select

from crmkit.runtime.i18n_text import text

from .ledger.errors import LedgerRefused

_members = Table("membership_member", MetaData(), Column("id", Integer), Column("status", String), Column("deleted_at", DateTime))
_STATUS = select(_members.c.status).where(_members.c.id == bindparam("member_id"))  # built once: it runs before every posting


class CardBlocked(LedgerRefused):
    code = "card_blocked"


def refuse_blocked_card(conn: Connection, member_id: int) -> None:
    """Points cannot be earned or redeemed on a lost or cancelled card (the ledger calls this before posting)."""
    status = conn.execute(_STATUS, {"member_id": member_id}).scalar()
    if status == "lost":
        raise CardBlocked(text("The member's card is reported lost: unfreeze it (解挂) or reissue it before posting points.",
                               "该会员卡已挂失：请先解挂或补卡，再办理积分。"))
    if status == "cancelled":
        raise CardBlocked(text("The member's account is cancelled: points can no longer be posted.", "该会员已注销，不能再办理积分。"))
