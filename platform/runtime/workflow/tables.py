"""Tables of the workflow engine (migration 0006w): history, approval requests and tasks, delegations,
and the managers of org units (the "org manager of the owner" approver)."""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table

from ..storage.platform_tables import metadata
from ..storage.types import UTCDateTime, json_type

_id = lambda: Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True)  # noqa: E731

# One row per workflow event on a record: a transition, a request for approval, an approver's decision.
workflow_history = Table(
    "crmkit_workflow_history", metadata,
    _id(),
    Column("entity", String(100), nullable=False),
    Column("record_id", BigInteger, nullable=False),
    Column("workflow", String(64), nullable=False),
    Column("event", String(32), nullable=False),  # transitioned | requested | approved | rejected | returned | delegated
    Column("transition", String(64), nullable=False),
    Column("from_state", String(64)),
    Column("to_state", String(64)),
    Column("actor_id", Integer),
    Column("at", UTCDateTime(), nullable=False),
    Column("comment", String(2000)),
    Column("field_values", json_type(), nullable=False),
    Column("approval_id", BigInteger),
    Index("ix_crmkit_workflow_history_record", "entity", "record_id", "id"),
)

# A transition waiting for approval. At most one is pending per record (checked under the record's row lock).
approval_request = Table(
    "crmkit_approval_request", metadata,
    _id(),
    Column("entity", String(100), nullable=False),
    Column("record_id", BigInteger, nullable=False),
    Column("workflow", String(64), nullable=False),
    Column("transition", String(64), nullable=False),
    Column("from_state", String(64)),
    Column("status", String(16), nullable=False),  # pending | approved | rejected | returned
    Column("mode", String(16), nullable=False),
    Column("step", Integer, nullable=False),
    Column("field_values", json_type(), nullable=False),
    Column("comment", String(2000)),
    Column("requested_by", Integer),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("decided_at", UTCDateTime()),
    Index("ix_crmkit_approval_request_record", "entity", "record_id", "status"),
    Index("ix_crmkit_approval_request_requester", "requested_by", "status"),
)

approval_task = Table(
    "crmkit_approval_task", metadata,
    _id(),
    Column("request_id", BigInteger, ForeignKey("crmkit_approval_request.id", ondelete="CASCADE"), nullable=False),
    Column("step", Integer, nullable=False),
    Column("assignee_id", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # waiting | pending | approved | rejected | returned | delegated | closed
    Column("delegated_from", Integer),
    Column("decided_by", Integer),
    Column("decided_at", UTCDateTime()),
    Column("comment", String(2000)),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_crmkit_approval_task_assignee", "assignee_id", "status"),
    Index("ix_crmkit_approval_task_request", "request_id", "step"),
)

# "While I am away, B approves for me": tasks of ``user_id`` may be decided by ``delegate_id`` in the period.
approval_delegation = Table(
    "crmkit_approval_delegation", metadata,
    _id(),
    Column("user_id", Integer, nullable=False),
    Column("delegate_id", Integer, nullable=False),
    Column("starts_at", UTCDateTime(), nullable=False),
    Column("ends_at", UTCDateTime(), nullable=False),
    Column("note", String(500)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
    Index("ix_crmkit_approval_delegation_delegate", "delegate_id", "ends_at"),
    Index("ix_crmkit_approval_delegation_user", "user_id", "ends_at"),
)

# Managers of an org unit (ab_user ids). The org manager of a record's owner is a manager of the owner's unit,
# or of the nearest ancestor unit with a manager other than the owner.
org_unit_manager = Table(
    "crmkit_org_unit_manager", metadata,
    Column("org_unit_id", BigInteger, ForeignKey("crmkit_org_unit.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Integer, primary_key=True),
    Index("ix_crmkit_org_unit_manager_user", "user_id"),
)
