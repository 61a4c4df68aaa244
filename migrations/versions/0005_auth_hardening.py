"""API keys, login lockout and session versions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

from crmkit.runtime.storage.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crmkit_user_auth",
        sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("session_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_failed_at", UTCDateTime()),
    )
    op.create_table(
        "crmkit_api_key",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime()),
        sa.Column("last_used_at", UTCDateTime()),
    )
    op.create_index("uq_crmkit_api_key_hash", "crmkit_api_key", ["key_hash"], unique=True)
    op.create_index("ix_crmkit_api_key_user", "crmkit_api_key", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_crmkit_api_key_user", table_name="crmkit_api_key")
    op.drop_index("uq_crmkit_api_key_hash", table_name="crmkit_api_key")
    op.drop_table("crmkit_api_key")
    op.drop_table("crmkit_user_auth")
