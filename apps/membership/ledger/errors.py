"""Why the ledger refuses a posting. Messages are bilingual and say what to do."""
from __future__ import annotations

from crmkit.runtime.errors import CrmkitError
from crmkit.runtime.i18n_text import text


class LedgerRefused(CrmkitError):
    code = "points_refused"
    status = 409
    default_message = text("The points posting was refused.", "积分记账被拒绝。")


class InsufficientPoints(LedgerRefused):
    code = "insufficient_points"


class RedemptionRefused(LedgerRefused):
    code = "redemption_refused"
