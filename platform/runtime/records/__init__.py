"""The one write path: validate → authorize → persist → audit → outbox, in one transaction."""
from .service import RecordService

__all__ = ["RecordService"]
