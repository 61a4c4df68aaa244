"""Saved list filters: a user's own filters, private or shared with roles.

Revision ID: 0008s
Revises: 0007a
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

from crmkit.runtime.storage.types import UTCDateTime, json_type

revision = "0008s"
down_revision = "0008m"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crmkit_saved_filter",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("entity", sa.String(200), nullable=False),
        sa.Column("owner_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("filter", json_type(), nullable=False),
        sa.Column("sort", sa.String(200)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("owner_id", "entity", "name", name="uq_crmkit_saved_filter_name"),
    )
    op.create_index("ix_crmkit_saved_filter_entity", "crmkit_saved_filter", ["entity", "owner_id"])
    op.create_table(
        "crmkit_saved_filter_role",
        sa.Column("filter_id", sa.Integer, sa.ForeignKey("crmkit_saved_filter.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role_id", sa.Integer, primary_key=True, autoincrement=False),
    )
    op.create_index("ix_crmkit_saved_filter_role_role", "crmkit_saved_filter_role", ["role_id"])


def downgrade() -> None:
    op.drop_index("ix_crmkit_saved_filter_role_role", "crmkit_saved_filter_role")
    op.drop_table("crmkit_saved_filter_role")
    op.drop_index("ix_crmkit_saved_filter_entity", "crmkit_saved_filter")
    op.drop_table("crmkit_saved_filter")
