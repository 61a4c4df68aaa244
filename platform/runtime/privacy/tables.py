"""Consent records: one row per grant, per data subject (a record) and channel; withdrawal closes the row."""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table

from ..storage.platform_tables import metadata
from ..storage.types import UTCDateTime

consent = Table(
    "crmkit_consent", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("entity", String(100), nullable=False),
    Column("record_id", BigInteger, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("purpose", String(200), nullable=False),
    Column("version", String(32), nullable=False),
    Column("granted_at", UTCDateTime(), nullable=False),
    Column("granted_by", Integer),
    Column("withdrawn_at", UTCDateTime()),
    Column("withdrawn_by", Integer),
    Index("ix_crmkit_consent_subject", "entity", "record_id", "channel"),
)
