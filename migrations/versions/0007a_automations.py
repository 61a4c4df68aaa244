"""Automations: the run log, one claimed row per (automation, record, occurrence).

Revision ID: 0007a
Revises: 0006r
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

from crmkit.runtime.storage.types import UTCDateTime, json_type

revision = "0007a"
down_revision = "0006r"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crmkit_automation_run",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("automation", sa.String(200), nullable=False),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("record_id", sa.BigInteger, nullable=False),
        sa.Column("occurrence", sa.String(100), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result", json_type()),
        sa.Column("error", sa.Text),
        sa.Column("actor_id", sa.Integer),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime()),
        sa.UniqueConstraint("automation", "record_id", "occurrence", name="uq_crmkit_automation_run"),
    )
    op.create_index("ix_crmkit_automation_run_automation", "crmkit_automation_run", ["automation", "id"])


def downgrade() -> None:
    op.drop_index("ix_crmkit_automation_run_automation", "crmkit_automation_run")
    op.drop_table("crmkit_automation_run")
