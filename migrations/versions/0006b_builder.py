"""Builder drafts and template base snapshots.

Revision ID: 0006b
Revises: 0005
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

from crmkit.runtime.storage.types import UTCDateTime, json_type

revision = "0006b"
down_revision = "0006i"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crmkit_builder_draft",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("entity_key", sa.String(200), nullable=False, unique=True),
        sa.Column("app", sa.String(32), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("documents", json_type(), nullable=False),
        sa.Column("base_stamp", sa.BigInteger, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.Integer),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.Integer),
    )
    op.create_table(
        "crmkit_template_base",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("app", sa.String(32), nullable=False),
        sa.Column("app_version", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("body", json_type(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("kind", "key", name="uq_crmkit_template_base_kind_key"),
    )


def downgrade() -> None:
    op.drop_table("crmkit_template_base")
    op.drop_table("crmkit_builder_draft")
