"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>.<body>"`` with the webhook's secret.

Headers: ``X-Crmkit-Timestamp`` (Unix seconds) and ``X-Crmkit-Signature: sha256=<hex>``. A receiver
recomputes the HMAC over the raw body, compares in constant time, and rejects old timestamps (replays).
"""
from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Crmkit-Signature"
TIMESTAMP_HEADER = "X-Crmkit-Timestamp"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, now: float, tolerance: int = 300) -> bool:
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)
