"""The membership points ledger: append-only, double-entry, idempotent per source document."""
from .errors import InsufficientPoints, LedgerRefused, RedemptionRefused
from .service import AdjustmentResult, LedgerService, Posted, check_invariants
from .tables import metadata

__all__ = ["AdjustmentResult", "InsufficientPoints", "LedgerRefused", "LedgerService", "Posted", "RedemptionRefused", "check_invariants", "metadata"]
