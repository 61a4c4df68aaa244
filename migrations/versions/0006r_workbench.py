"""Workbench: favourites, watched records and per-role default favourites.

Revision ID: 0006r
Revises: 0005
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

from crmkit.runtime.storage.types import UTCDateTime, json_type

revision = "0006r"
down_revision = "0006w"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crmkit_favorite",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("user_id", "kind", "target", name="uq_crmkit_favorite"),
    )
    op.create_table(
        "crmkit_watch",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("entity", sa.String(200), nullable=False),
        sa.Column("record_id", sa.BigInteger, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("user_id", "entity", "record_id", name="uq_crmkit_watch"),
    )
    op.create_table(
        "crmkit_workbench_default",
        sa.Column("role_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("favorites", json_type(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.Integer),
    )


def downgrade() -> None:
    op.drop_table("crmkit_workbench_default")
    op.drop_table("crmkit_watch")
    op.drop_table("crmkit_favorite")
