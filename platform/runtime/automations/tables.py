"""The automation run log (migration 0007a). One row per (automation, record, occurrence), claimed before acting."""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text, UniqueConstraint

from ..storage.platform_tables import metadata
from ..storage.types import UTCDateTime, json_type

automation_run = Table(
    "crmkit_automation_run", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("automation", String(200), nullable=False),   # "<entity>:<name>"
    Column("entity", String(100), nullable=False),
    Column("record_id", BigInteger, nullable=False),
    Column("occurrence", String(100), nullable=False),   # event:<id> | date:<YYYY-MM-DD> | month:<YYYY-MM> | slot:<ISO minute> | manual:<request id>
    Column("trigger", String(32), nullable=False),
    Column("status", String(16), nullable=False),        # running | succeeded | failed
    Column("result", json_type()),
    Column("error", Text),
    Column("actor_id", Integer),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    UniqueConstraint("automation", "record_id", "occurrence", name="uq_crmkit_automation_run"),
)
Index("ix_crmkit_automation_run_automation", automation_run.c.automation, automation_run.c.id)
