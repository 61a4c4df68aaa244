"""The audit log: append-only, hash-chained entries written through one function, ``record_event``."""
from .batch import record_events
from .seal import seal_now, seal_pending
from .sealer import flush_sealer
from .service import CATEGORIES, record_event, record_event_now

__all__ = ["CATEGORIES", "flush_sealer", "record_event", "record_event_now", "record_events", "seal_now", "seal_pending"]
