"""Errors the alliance app raises (bilingual messages, 422 like other business-rule refusals)."""
from __future__ import annotations

from crmkit.runtime.errors import CrmkitError


class OfferRefused(CrmkitError):
    """An offer cannot be used now by this member at this merchant (level, limit, validity, blackout, status)."""

    code = "offer_refused"
    status = 422


class NotMerchantStaff(CrmkitError):
    code = "not_merchant_staff"
    status = 403


class SettlementRefused(CrmkitError):
    code = "settlement_refused"
    status = 422
