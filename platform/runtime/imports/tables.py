"""Tables of imports and the API's idempotency keys (migration 0006i)."""
from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text, UniqueConstraint, false

from ..storage.platform_tables import metadata
from ..storage.types import UTCDateTime, json_type

# One row per import: what was read, how, and how far it got. ``checkpoint`` is the last spreadsheet row number
# whose batch committed; it changes in the same transaction as the batch, so a resumed run neither skips nor repeats.
import_run = Table(
    "crmkit_import_run", metadata,
    Column("id", Integer, primary_key=True),
    Column("entity", String(100), nullable=False),
    Column("file_path", String(500), nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("file_sha256", String(64), nullable=False),
    Column("sheet", String(100)),
    Column("mapping", json_type(), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("key_field", String(64)),
    Column("batch_size", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("checkpoint", Integer, nullable=False, server_default="0"),
    Column("total_rows", Integer),
    Column("created_count", Integer, nullable=False, server_default="0"),
    Column("updated_count", Integer, nullable=False, server_default="0"),
    Column("skipped_count", Integer, nullable=False, server_default="0"),
    Column("error_count", Integer, nullable=False, server_default="0"),
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    Column("message", Text),
    Column("created_by", Integer),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
)

# Rows that were not imported (or skipped), with the original cells, so the error report can be fixed and re-uploaded.
import_error = Table(
    "crmkit_import_error", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("run_id", Integer, nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("kind", String(8), nullable=False),  # "error" or "skip"
    Column("messages", json_type(), nullable=False),  # [{"column": header or "", "message": {"zh":..,"en":..}}]
    Column("cells", json_type(), nullable=False),  # the original row, as text
    Index("ix_crmkit_import_error_run", "run_id", "row_number"),
)

# A saved column mapping (header → field) that a later import of the same kind of file can reuse.
import_mapping = Table(
    "crmkit_import_mapping", metadata,
    Column("id", Integer, primary_key=True),
    Column("entity", String(100), nullable=False),
    Column("name", String(100), nullable=False),
    Column("mapping", json_type(), nullable=False),
    Column("created_by", Integer),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("entity", "name", name="uq_crmkit_import_mapping_name"),
)

# Idempotency-Key replay store for API POSTs, scoped per user.
idempotency_key = Table(
    "crmkit_idempotency_key", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, nullable=False),
    Column("key", String(200), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer),
    Column("response", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    UniqueConstraint("user_id", "key", name="uq_crmkit_idempotency_user_key"),
    Index("ix_crmkit_idempotency_expires", "expires_at"),
)
