"""Message deliveries keep extra email headers (Message-ID, In-Reply-To, References), so a reply threads.

Revision ID: 0008m
Revises: 0007a
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

from crmkit.runtime.storage.types import json_type

revision = "0008m"
down_revision = "0007a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("crmkit_message_delivery") as batch:
        batch.add_column(sa.Column("headers", json_type(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("crmkit_message_delivery") as batch:
        batch.drop_column("headers")
