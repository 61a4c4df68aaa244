"""Outbound webhooks: signed, policy-filtered record events with retries and a delivery log."""
from .service import DELIVER_JOB, EVENT_TYPES, WebhookService
from .signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify

__all__ = ["DELIVER_JOB", "EVENT_TYPES", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookService", "sign", "verify"]
