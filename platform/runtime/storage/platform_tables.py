"""The platform's own tables. They change only through Alembic migrations in ``migrations/``."""
from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, false, true, ForeignKey, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

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

# Append-only and hash-chained (see crmkit.runtime.audit): write only through audit.record_event (or, for a hot path's own
# statement on PostgreSQL, with the values of audit.service.pending_entry).
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
    Column("last_error", Text),
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


def _bigid():
    return BigInteger().with_variant(Integer, "sqlite")


# Background jobs (crmkit.runtime.jobs). A row is claimed by a conditional UPDATE; a running row whose
# heartbeat is older than the lease is requeued by the reaper.
job = Table(
    "crmkit_job", metadata,
    Column("id", _bigid(), primary_key=True),
    Column("kind", String(100), nullable=False),
    Column("payload", json_type(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("dedupe_key", String(200)),
    Column("progress_done", Integer, nullable=False, server_default="0"),
    Column("progress_total", Integer),
    Column("message", String(500)),
    Column("error", Text),
    Column("result", json_type()),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False, server_default="5"),
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    Column("run_after", UTCDateTime()),
    Column("heartbeat_at", UTCDateTime()),
    Column("worker", String(100)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    Column("actor_id", Integer),
    UniqueConstraint("dedupe_key", name="uq_crmkit_job_dedupe"),
    Index("ix_crmkit_job_status", "status", "run_after"),
    Index("ix_crmkit_job_actor", "actor_id", "id"),
)

# A named lease held by one process at a time (the outbox dispatcher), taken with a conditional UPDATE.
lease = Table(
    "crmkit_lease", metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(100)),
    Column("expires_at", UTCDateTime()),
)

notification = Table(
    "crmkit_notification", metadata,
    Column("id", _bigid(), primary_key=True),
    Column("user_id", Integer, nullable=False),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("url", String(500)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("read_at", UTCDateTime()),
    Index("ix_crmkit_notification_user", "user_id", "read_at", "id"),
)

message_template = Table(
    "crmkit_message_template", metadata,
    Column("key", String(100), primary_key=True),
    Column("channel", String(16), nullable=False),
    Column("subject", String(300)),
    Column("body", Text, nullable=False),
    Column("html", Boolean, nullable=False, server_default=false()),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("updated_by", Integer),
)

message_delivery = Table(
    "crmkit_message_delivery", metadata,
    Column("id", _bigid(), primary_key=True),
    Column("channel", String(16), nullable=False),
    Column("recipient", String(300), nullable=False),
    Column("template_key", String(100)),
    Column("subject", String(300)),
    Column("body", Text, nullable=False),
    Column("html", Boolean, nullable=False, server_default=false()),
    Column("entity", String(100)),
    Column("record_id", BigInteger),
    Column("purpose", String(200)),
    Column("headers", json_type()),  # extra email headers (Message-ID, In-Reply-To, References) for threading
    Column("status", String(16), nullable=False),
    Column("provider", String(50)),
    Column("provider_ref", String(200)),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("job_id", BigInteger),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    Column("actor_id", Integer),
    Index("ix_crmkit_message_delivery_subject", "entity", "record_id", "id"),
)

# Fixed one-minute windows per channel, used when no Redis is configured.
rate_counter = Table(
    "crmkit_rate_counter", metadata,
    Column("bucket", String(100), primary_key=True),
    Column("window_start", BigInteger, primary_key=True),
    Column("count", Integer, nullable=False),
)

webhook = Table(
    "crmkit_webhook", metadata,
    Column("id", _bigid(), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("url", String(1000), nullable=False),
    Column("entity", String(100), nullable=False),
    Column("events", json_type(), nullable=False),
    Column("owner_role_id", Integer),
    Column("owner_user_id", Integer),
    Column("secret", String(100), nullable=False),
    Column("active", Boolean, nullable=False, server_default=true()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", Integer),
)

webhook_delivery = Table(
    "crmkit_webhook_delivery", metadata,
    Column("id", _bigid(), primary_key=True),
    Column("webhook_id", BigInteger, ForeignKey("crmkit_webhook.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", BigInteger),
    Column("event_type", String(100), nullable=False),
    Column("payload", json_type(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("response_code", Integer),
    Column("response_body", String(1000)),
    Column("error", Text),
    Column("job_id", BigInteger),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("delivered_at", UTCDateTime()),
    UniqueConstraint("webhook_id", "event_id", name="uq_crmkit_webhook_delivery_event"),
    Index("ix_crmkit_webhook_delivery_hook", "webhook_id", "id"),
)

# The browser builder (crmkit.builder): one draft per entity, edited with a revision number so two
# people editing the same draft get a conflict instead of overwriting each other.
builder_draft = Table(
    "crmkit_builder_draft", metadata,
    Column("id", Integer, primary_key=True),
    Column("entity_key", String(200), nullable=False, unique=True),
    Column("app", String(32), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("documents", json_type(), nullable=False),
    Column("base_stamp", BigInteger, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", Integer),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("updated_by", Integer),
)

# What each template document looked like when it was installed: the base of a three-way upgrade.
template_base = Table(
    "crmkit_template_base", metadata,
    Column("id", Integer, primary_key=True),
    Column("app", String(32), nullable=False),
    Column("app_version", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("key", String(200), nullable=False),
    Column("body", json_type(), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    UniqueConstraint("kind", "key", name="uq_crmkit_template_base_kind_key"),
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

# --- saved list filters (a user's own, private or shared with roles) ----------------------------
saved_filter = Table(
    "crmkit_saved_filter", metadata,
    Column("id", Integer, primary_key=True),
    Column("entity", String(200), nullable=False),
    Column("owner_id", Integer, nullable=False),
    Column("name", String(100), nullable=False),
    Column("filter", json_type(), nullable=False),  # a query-service filter tree, validated when saved
    Column("sort", String(200)),                    # "-joined_on,name", or NULL for the view's default
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("owner_id", "entity", "name", name="uq_crmkit_saved_filter_name"),
)
Index("ix_crmkit_saved_filter_entity", saved_filter.c.entity, saved_filter.c.owner_id)

# The roles a saved filter is shared with; none = private to its owner. role_id is ab_role.id without a
# foreign key (Flask-AppBuilder owns that table), like the permission rule tables.
saved_filter_role = Table(
    "crmkit_saved_filter_role", metadata,
    Column("filter_id", Integer, ForeignKey("crmkit_saved_filter.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", Integer, primary_key=True, autoincrement=False),
)
Index("ix_crmkit_saved_filter_role_role", saved_filter_role.c.role_id)
