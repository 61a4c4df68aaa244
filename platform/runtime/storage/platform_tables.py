"""The platform's own tables. They change only through Alembic migrations in ``migrations/``."""
from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, false, ForeignKey, Index, Integer, MetaData, String, Table, UniqueConstraint

from .types import UTCDateTime, json_type

metadata = MetaData()

document = Table(
    "crmkit_document", metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("app", String(32), nullable=False),
    Column("key", String(200), nullable=False),
    Column("body", json_type(), nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("updated_by", Integer),
    UniqueConstraint("kind", "key", name="uq_crmkit_document_kind_key"),
)

document_version = Table(
    "crmkit_document_version", metadata,
    Column("id", Integer, primary_key=True),
    Column("document_id", Integer, ForeignKey("crmkit_document.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("body", json_type(), nullable=False),
    Column("diff", json_type(), nullable=False),
    Column("changed_at", UTCDateTime(), nullable=False),
    Column("changed_by", Integer),
    Column("comment", String(500)),
    UniqueConstraint("document_id", "version", name="uq_crmkit_document_version"),
)

meta_stamp = Table(
    "crmkit_meta_stamp", metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)

installed_app = Table(
    "crmkit_installed_app", metadata,
    Column("id", String(32), primary_key=True),
    Column("version", String(32), nullable=False),
    Column("installed_at", UTCDateTime(), nullable=False),
    Column("installed_by", Integer),
)

# What the schema executor last applied, keyed by stable ids: a renamed field is a rename, not drop + add.
applied_entity = Table(
    "crmkit_applied_entity", metadata,
    Column("entity_id", String(64), primary_key=True),
    Column("entity_key", String(100), nullable=False),
    Column("table_name", String(100), nullable=False),
)

applied_field = Table(
    "crmkit_applied_field", metadata,
    Column("entity_id", String(64), primary_key=True),
    Column("field_id", String(64), primary_key=True),
    Column("column_name", String(64), nullable=False),
    Column("type_sig", String(100), nullable=False),
)

# Append-only and hash-chained (see crmkit.runtime.audit): write only through audit.record_event.
audit = Table(
    "crmkit_audit", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor_id", Integer),
    Column("entity", String(100)),
    Column("record_id", BigInteger),
    Column("action", String(32), nullable=False),
    Column("changes", json_type(), nullable=False),
    Column("request_id", String(64)),
    Column("seq", BigInteger),
    Column("category", String(32), nullable=False, server_default="record"),
    Column("subject", String(200)),
    Column("ip", String(64)),
    Column("payload_hash", String(64)),
    Column("prev_hash", String(64)),
    Column("hash", String(64)),
    Column("redacted", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("seq", name="uq_crmkit_audit_seq"),
    Index("ix_crmkit_audit_record", "entity", "record_id", "id"),
    Index("ix_crmkit_audit_category", "category", "seq"),
    Index("ix_crmkit_audit_at", "at"),
)

outbox = Table(
    "crmkit_outbox", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("topic", String(100), nullable=False),
    Column("entity", String(100), nullable=False),
    Column("record_id", BigInteger, nullable=False),
    Column("payload", json_type(), nullable=False),
    Column("dispatched_at", UTCDateTime()),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Index("ix_crmkit_outbox_pending", "dispatched_at", "id"),
)

sequence = Table(
    "crmkit_sequence", metadata,
    Column("key", String(200), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

org_unit = Table(
    "crmkit_org_unit", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("parent_id", BigInteger, ForeignKey("crmkit_org_unit.id")),
    Column("name", String(200), nullable=False),
    Column("code", String(64), nullable=False, unique=True),
    Column("kind", String(32), nullable=False, server_default="department"),
    Column("path", String(1000), nullable=False),
)

stored_file = Table(
    "crmkit_file", metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", Integer),
)

# --- workbench (personal start page) -------------------------------------------------------
favorite = Table(
    "crmkit_favorite", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, nullable=False),
    Column("kind", String(16), nullable=False),  # entity | report | dashboard
    Column("target", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("user_id", "kind", "target", name="uq_crmkit_favorite"),
)

watch = Table(
    "crmkit_watch", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, nullable=False),
    Column("entity", String(200), nullable=False),
    Column("record_id", BigInteger, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("user_id", "entity", "record_id", name="uq_crmkit_watch"),
)

workbench_default = Table(
    "crmkit_workbench_default", metadata,
    Column("role_id", Integer, primary_key=True, autoincrement=False),
    Column("favorites", json_type(), nullable=False),  # [{"kind", "target"}]
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("updated_by", Integer),
)
