"""The audit chain head: one row that writers lock, so entries are chained in one order.

``seq``/``hash`` are the newest entry's; ``anchor_seq``/``anchor_hash`` are the last entry removed by a
retention purge, from which verification starts.
"""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, String, Table

from ..storage.platform_tables import metadata

GENESIS_HASH = "0" * 64

audit_head = Table(
    "crmkit_audit_head", metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("anchor_seq", BigInteger, nullable=False),
    Column("anchor_hash", String(64), nullable=False),
)
