"""Tables of the auth hardening: per-user login state and API keys (migration 0005)."""
from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table

from ..storage.platform_tables import metadata
from ..storage.types import UTCDateTime

# One row per user that has failed a login or signed out everywhere; absent means "all defaults".
# ``session_version`` is part of every session's fingerprint: bumping it ends all of the user's sessions.
user_auth = Table(
    "crmkit_user_auth", metadata,
    Column("user_id", Integer, primary_key=True, autoincrement=False),
    Column("session_version", Integer, nullable=False, default=0),
    Column("last_failed_at", UTCDateTime()),
)

# API keys: only the SHA-256 of the key is stored; the key itself is shown once when created.
api_key = Table(
    "crmkit_api_key", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, nullable=False),
    Column("name", String(100), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
    Column("last_used_at", UTCDateTime()),
    Index("uq_crmkit_api_key_hash", "key_hash", unique=True),
    Index("ix_crmkit_api_key_user", "user_id"),
)
