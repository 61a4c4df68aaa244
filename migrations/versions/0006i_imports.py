"""Import runs, import errors, saved mappings and API idempotency keys.

Revision ID: 0006i
Revises: 0005
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

from crmkit.runtime.storage.types import UTCDateTime, json_type

revision = "0006i"
down_revision = "0006j"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crmkit_import_run",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("file_path", sa.String(500), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("sheet", sa.String(100)),
        sa.Column("mapping", json_type(), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("key_field", sa.String(64)),
        sa.Column("batch_size", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("checkpoint", sa.Integer, nullable=False, server_default="0"),
        sa.Column("total_rows", sa.Integer),
        sa.Column("created_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("skipped_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("message", sa.Text),
        sa.Column("created_by", sa.Integer),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime()),
    )
    op.create_table(
        "crmkit_import_error",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("messages", json_type(), nullable=False),
        sa.Column("cells", json_type(), nullable=False),
    )
    op.create_index("ix_crmkit_import_error_run", "crmkit_import_error", ["run_id", "row_number"])
    op.create_table(
        "crmkit_import_mapping",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("mapping", json_type(), nullable=False),
        sa.Column("created_by", sa.Integer),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("entity", "name", name="uq_crmkit_import_mapping_name"),
    )
    op.create_table(
        "crmkit_idempotency_key",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("response", sa.Text),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("user_id", "key", name="uq_crmkit_idempotency_user_key"),
    )
    op.create_index("ix_crmkit_idempotency_expires", "crmkit_idempotency_key", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_crmkit_idempotency_expires", table_name="crmkit_idempotency_key")
    op.drop_table("crmkit_idempotency_key")
    op.drop_table("crmkit_import_mapping")
    op.drop_index("ix_crmkit_import_error_run", table_name="crmkit_import_error")
    op.drop_table("crmkit_import_error")
    op.drop_table("crmkit_import_run")
