"""Platform tables: metadata documents and history, applied schema state, audit, outbox, sequences, org units, files.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from crmkit.runtime.storage.types import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _json():
    return sa.JSON().with_variant(JSONB(), "postgresql")


def _bigid():
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "crmkit_document",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("app", sa.String(32), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("body", _json(), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.Integer),
        sa.UniqueConstraint("kind", "key", name="uq_crmkit_document_kind_key"),
    )
    op.create_table(
        "crmkit_document_version",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("document_id", sa.Integer, sa.ForeignKey("crmkit_document.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("body", _json(), nullable=False),
        sa.Column("diff", _json(), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.Column("changed_by", sa.Integer),
        sa.Column("comment", sa.String(500)),
        sa.UniqueConstraint("document_id", "version", name="uq_crmkit_document_version"),
    )
    op.create_table("crmkit_meta_stamp", sa.Column("id", sa.Integer, primary_key=True), sa.Column("version", sa.BigInteger, nullable=False))
    op.execute("INSERT INTO crmkit_meta_stamp (id, version) VALUES (1, 0)")
    op.create_table(
        "crmkit_installed_app",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("installed_at", UTCDateTime(), nullable=False),
        sa.Column("installed_by", sa.Integer),
    )
    op.create_table(
        "crmkit_applied_entity",
        sa.Column("entity_id", sa.String(64), primary_key=True),
        sa.Column("entity_key", sa.String(100), nullable=False),
        sa.Column("table_name", sa.String(100), nullable=False),
    )
    op.create_table(
        "crmkit_applied_field",
        sa.Column("entity_id", sa.String(64), primary_key=True),
        sa.Column("field_id", sa.String(64), primary_key=True),
        sa.Column("column_name", sa.String(64), nullable=False),
        sa.Column("type_sig", sa.String(100), nullable=False),
    )
    op.create_table(
        "crmkit_audit",
        sa.Column("id", _bigid(), primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor_id", sa.Integer),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("record_id", sa.BigInteger, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("changes", _json(), nullable=False),
        sa.Column("request_id", sa.String(64)),
    )
    op.create_index("ix_crmkit_audit_record", "crmkit_audit", ["entity", "record_id", "id"])
    op.create_table(
        "crmkit_outbox",
        sa.Column("id", _bigid(), primary_key=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("topic", sa.String(100), nullable=False),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("record_id", sa.BigInteger, nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("dispatched_at", UTCDateTime()),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_crmkit_outbox_pending", "crmkit_outbox", ["dispatched_at", "id"])
    op.create_table("crmkit_sequence", sa.Column("key", sa.String(200), primary_key=True), sa.Column("value", sa.BigInteger, nullable=False))
    op.create_table(
        "crmkit_org_unit",
        sa.Column("id", _bigid(), primary_key=True),
        sa.Column("parent_id", sa.BigInteger, sa.ForeignKey("crmkit_org_unit.id")),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("code", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False, server_default="department"),
        sa.Column("path", sa.String(1000), nullable=False),
    )
    op.create_table(
        "crmkit_file",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.Integer),
    )


def downgrade() -> None:
    for name in ("crmkit_file", "crmkit_org_unit", "crmkit_sequence", "crmkit_outbox", "crmkit_audit", "crmkit_applied_field",
                 "crmkit_applied_entity", "crmkit_installed_app", "crmkit_meta_stamp", "crmkit_document_version", "crmkit_document"):
        op.drop_table(name)
