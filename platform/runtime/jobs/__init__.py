"""Background jobs: a typed registry of kinds, a job table that is the truth, Huey underneath (docs/architecture.md)."""
from .registry import JobContext, JobHandler, JobKind, JobRegistry, PeriodicJob
from .service import CANCELLED, FAILED, QUEUED, RUNNING, STATUSES, SUCCEEDED, JobCancelled, JobService, RetryLater

__all__ = [
    "CANCELLED", "FAILED", "QUEUED", "RUNNING", "STATUSES", "SUCCEEDED",
    "JobCancelled", "JobContext", "JobHandler", "JobKind", "JobRegistry", "JobService", "PeriodicJob", "RetryLater",
]
