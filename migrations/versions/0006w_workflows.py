"""Workflow engine: history, approval requests/tasks, delegations, org unit managers.

Revision ID: 0006w
Revises: 0005
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

from crmkit.runtime.storage.types import UTCDateTime, json_type

revision = "0006w"
down_revision = "0006b"
branch_labels = None
depends_on = None


def _id():
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "crmkit_workflow_history", _id(),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("record_id", sa.BigInteger, nullable=False),
        sa.Column("workflow", sa.String(64), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("transition", sa.String(64), nullable=False),
        sa.Column("from_state", sa.String(64)),
        sa.Column("to_state", sa.String(64)),
        sa.Column("actor_id", sa.Integer),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("comment", sa.String(2000)),
        sa.Column("field_values", json_type(), nullable=False),
        sa.Column("approval_id", sa.BigInteger),
    )
    op.create_index("ix_crmkit_workflow_history_record", "crmkit_workflow_history", ["entity", "record_id", "id"])
    op.create_table(
        "crmkit_approval_request", _id(),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("record_id", sa.BigInteger, nullable=False),
        sa.Column("workflow", sa.String(64), nullable=False),
        sa.Column("transition", sa.String(64), nullable=False),
        sa.Column("from_state", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("field_values", json_type(), nullable=False),
        sa.Column("comment", sa.String(2000)),
        sa.Column("requested_by", sa.Integer),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime()),
    )
    op.create_index("ix_crmkit_approval_request_record", "crmkit_approval_request", ["entity", "record_id", "status"])
    op.create_index("ix_crmkit_approval_request_requester", "crmkit_approval_request", ["requested_by", "status"])
    op.create_table(
        "crmkit_approval_task", _id(),
        sa.Column("request_id", sa.BigInteger, sa.ForeignKey("crmkit_approval_request.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("assignee_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("delegated_from", sa.Integer),
        sa.Column("decided_by", sa.Integer),
        sa.Column("decided_at", UTCDateTime()),
        sa.Column("comment", sa.String(2000)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_crmkit_approval_task_assignee", "crmkit_approval_task", ["assignee_id", "status"])
    op.create_index("ix_crmkit_approval_task_request", "crmkit_approval_task", ["request_id", "step"])
    op.create_table(
        "crmkit_approval_delegation", _id(),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("delegate_id", sa.Integer, nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("note", sa.String(500)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime()),
    )
    op.create_index("ix_crmkit_approval_delegation_delegate", "crmkit_approval_delegation", ["delegate_id", "ends_at"])
    op.create_index("ix_crmkit_approval_delegation_user", "crmkit_approval_delegation", ["user_id", "ends_at"])
    op.create_table(
        "crmkit_org_unit_manager",
        sa.Column("org_unit_id", sa.BigInteger, sa.ForeignKey("crmkit_org_unit.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.Integer, primary_key=True),
    )
    op.create_index("ix_crmkit_org_unit_manager_user", "crmkit_org_unit_manager", ["user_id"])


def downgrade() -> None:
    op.drop_table("crmkit_org_unit_manager")
    op.drop_table("crmkit_approval_delegation")
    op.drop_table("crmkit_approval_task")
    op.drop_table("crmkit_approval_request")
    op.drop_table("crmkit_workflow_history")
