"""Field rules, row scopes and the policy version stamp.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crmkit_field_rule",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("role_id", sa.Integer, nullable=False),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("access", sa.String(16), nullable=False),
        sa.Column("may_unmask", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.UniqueConstraint("role_id", "entity", "field", name="uq_crmkit_field_rule"),
    )
    op.create_table(
        "crmkit_row_scope",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("role_id", sa.Integer, nullable=False),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("filter", sa.JSON().with_variant(JSONB(), "postgresql")),
        sa.UniqueConstraint("role_id", "entity", name="uq_crmkit_row_scope"),
    )
    stamp = op.create_table(
        "crmkit_policy_stamp",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(stamp, [{"id": 1, "version": 1}])


def downgrade() -> None:
    op.drop_table("crmkit_policy_stamp")
    op.drop_table("crmkit_row_scope")
    op.drop_table("crmkit_field_rule")
