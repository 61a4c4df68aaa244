"""The ledger's member check: no points are earned or redeemed on a lost (挂失) or cancelled (注销) card."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import Column, DateTime, Integer, MetaData, ScalarSelect, String, Table, bindparam, select

from crmkit.runtime.i18n_text import text

from .ledger.errors import LedgerRefused

_members = Table("membership_member", MetaData(), Column("id", Integer), Column("status", String), Column("deleted_at", DateTime))
_STATUS = select(_members.c.status).where(_members.c.id == bindparam("member_id"))


class CardBlocked(LedgerRefused):
    code = "card_blocked"


@dataclass(frozen=True)
class MemberCheck:
    """What the ledger checks about a member before posting: ``status`` (a scalar subquery on the ``member_id``
    parameter, read in the statement that also looks for the posting's key) and ``refuse(status)``, which raises."""

    status: ScalarSelect
    refuse: Callable[[Any], None]


def refuse_blocked_status(status: str | None) -> None:
    """Points cannot be earned or redeemed on a lost or cancelled card."""
    if status == "lost":
        raise CardBlocked(text("The member's card is reported lost: unfreeze it (解挂) or reissue it before posting points.",
                               "该会员卡已挂失：请先解挂或补卡，再办理积分。"))
    if status == "cancelled":
        raise CardBlocked(text("The member's account is cancelled: points can no longer be posted.", "该会员已注销，不能再办理积分。"))


CARD_CHECK = MemberCheck(status=_STATUS.scalar_subquery(), refuse=refuse_blocked_status)  # the ledger's default
