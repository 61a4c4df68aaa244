"""Background jobs, a lease table, in-app notifications, message templates and deliveries, rate counters,
outbound webhooks and their deliveries; the outbox keeps the last dispatch error.

Revision ID: 0006j
Revises: 0005
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from crmkit.runtime.storage.types import UTCDateTime

revision = "0006j"
down_revision = "0005"
branch_labels = None
depends_on = None


def _json():
    return sa.JSON().with_variant(JSONB(), "postgresql")


def _bigid():
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("crmkit_outbox") as batch:
        batch.add_column(sa.Column("last_error", sa.Text))
    op.create_table(
        "crmkit_job",
        sa.Column("id", _bigid(), primary_key=True),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("dedupe_key", sa.String(200)),
        sa.Column("progress_done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("progress_total", sa.Integer),
        sa.Column("message", sa.String(500)),
        sa.Column("error", sa.Text),
        sa.Column("result", _json()),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer, nullable=False, server_default="5"),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("run_after", UTCDateTime()),
        sa.Column("heartbeat_at", UTCDateTime()),
        sa.Column("worker", sa.String(100)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime()),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("actor_id", sa.Integer),
        sa.UniqueConstraint("dedupe_key", name="uq_crmkit_job_dedupe"),
    )
    op.create_index("ix_crmkit_job_actor", "crmkit_job", ["actor_id", "id"])
    op.create_index("ix_crmkit_job_status", "crmkit_job", ["status", "run_after"])
    op.create_table(
        "crmkit_lease",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("holder", sa.String(100)),
        sa.Column("expires_at", UTCDateTime()),
    )
    op.create_table(
        "crmkit_notification",
        sa.Column("id", _bigid(), primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("url", sa.String(500)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("read_at", UTCDateTime()),
    )
    op.create_index("ix_crmkit_notification_user", "crmkit_notification", ["user_id", "read_at", "id"])
    op.create_table(
        "crmkit_message_template",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(300)),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("html", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.Integer),
    )
    op.create_table(
        "crmkit_message_delivery",
        sa.Column("id", _bigid(), primary_key=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(300), nullable=False),
        sa.Column("template_key", sa.String(100)),
        sa.Column("subject", sa.String(300)),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("html", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("entity", sa.String(100)),
        sa.Column("record_id", sa.BigInteger),
        sa.Column("purpose", sa.String(200)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(50)),
        sa.Column("provider_ref", sa.String(200)),
        sa.Column("error", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("job_id", sa.BigInteger),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime()),
        sa.Column("actor_id", sa.Integer),
    )
    op.create_index("ix_crmkit_message_delivery_subject", "crmkit_message_delivery", ["entity", "record_id", "id"])
    op.create_table(
        "crmkit_rate_counter",
        sa.Column("bucket", sa.String(100), primary_key=True),
        sa.Column("window_start", sa.BigInteger, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_table(
        "crmkit_webhook",
        sa.Column("id", _bigid(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("url", sa.String(1000), nullable=False),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("events", _json(), nullable=False),
        sa.Column("owner_role_id", sa.Integer),
        sa.Column("owner_user_id", sa.Integer),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.Integer),
    )
    op.create_table(
        "crmkit_webhook_delivery",
        sa.Column("id", _bigid(), primary_key=True),
        sa.Column("webhook_id", sa.BigInteger, sa.ForeignKey("crmkit_webhook.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event_id", sa.BigInteger),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("response_code", sa.Integer),
        sa.Column("response_body", sa.String(1000)),
        sa.Column("error", sa.Text),
        sa.Column("job_id", sa.BigInteger),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime()),
        sa.UniqueConstraint("webhook_id", "event_id", name="uq_crmkit_webhook_delivery_event"),
    )
    op.create_index("ix_crmkit_webhook_delivery_hook", "crmkit_webhook_delivery", ["webhook_id", "id"])


def downgrade() -> None:
    for name in ("crmkit_webhook_delivery", "crmkit_webhook", "crmkit_rate_counter", "crmkit_message_delivery", "crmkit_message_template", "crmkit_notification", "crmkit_lease", "crmkit_job"):
        op.drop_table(name)
    with op.batch_alter_table("crmkit_outbox") as batch:
        batch.drop_column("last_error")
