"""Org structure: posts (岗位) carrying roles, users' org units and posts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _bigid():
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_index("ix_crmkit_org_unit_path", "crmkit_org_unit", ["path"], postgresql_ops={"path": "varchar_pattern_ops"})
    op.create_index("ix_crmkit_org_unit_parent", "crmkit_org_unit", ["parent_id"])
    op.create_table(
        "crmkit_post",
        sa.Column("id", _bigid(), primary_key=True),
        sa.Column("org_unit_id", sa.BigInteger, sa.ForeignKey("crmkit_org_unit.id"), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("code", sa.String(64), nullable=False, unique=True),
        sa.Column("description", sa.String(1000)),
    )
    op.create_table(
        "crmkit_post_role",
        sa.Column("post_id", sa.BigInteger, sa.ForeignKey("crmkit_post.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role_id", sa.Integer, primary_key=True),
    )
    op.create_table(
        "crmkit_user_org",
        sa.Column("user_id", sa.Integer, primary_key=True),
        sa.Column("org_unit_id", sa.BigInteger, sa.ForeignKey("crmkit_org_unit.id"), nullable=False),
    )
    op.create_index("ix_crmkit_user_org_unit", "crmkit_user_org", ["org_unit_id"])
    op.create_table(
        "crmkit_user_post",
        sa.Column("user_id", sa.Integer, primary_key=True),
        sa.Column("post_id", sa.BigInteger, sa.ForeignKey("crmkit_post.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_index("ix_crmkit_user_post_post", "crmkit_user_post", ["post_id"])


def downgrade() -> None:
    for name in ("crmkit_user_post", "crmkit_user_org", "crmkit_post_role", "crmkit_post"):
        op.drop_table(name)
    op.drop_index("ix_crmkit_org_unit_parent", table_name="crmkit_org_unit")
    op.drop_index("ix_crmkit_org_unit_path", table_name="crmkit_org_unit")
