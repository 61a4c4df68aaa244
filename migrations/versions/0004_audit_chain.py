"""Hash-chained audit log, consent records and erasure markers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

from crmkit.runtime.audit.chain import entry_hash, payload_hash
from crmkit.runtime.storage.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def _bigid():
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("crmkit_audit") as batch:
        batch.alter_column("entity", existing_type=sa.String(100), nullable=True)
        batch.alter_column("record_id", existing_type=sa.BigInteger(), nullable=True)
        batch.alter_column("action", existing_type=sa.String(16), type_=sa.String(32), existing_nullable=False)
        batch.add_column(sa.Column("seq", sa.BigInteger()))
        batch.add_column(sa.Column("category", sa.String(32), nullable=False, server_default="record"))
        batch.add_column(sa.Column("subject", sa.String(200)))
        batch.add_column(sa.Column("ip", sa.String(64)))
        batch.add_column(sa.Column("payload_hash", sa.String(64)))
        batch.add_column(sa.Column("prev_hash", sa.String(64)))
        batch.add_column(sa.Column("hash", sa.String(64)))
        batch.add_column(sa.Column("redacted", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.create_unique_constraint("uq_crmkit_audit_seq", ["seq"])
    op.create_index("ix_crmkit_audit_category", "crmkit_audit", ["category", "seq"])
    op.create_index("ix_crmkit_audit_at", "crmkit_audit", ["at"])
    op.create_table(
        "crmkit_audit_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("anchor_seq", sa.BigInteger, nullable=False),
        sa.Column("anchor_hash", sa.String(64), nullable=False),
    )
    seq, prev = _chain_existing_entries()
    op.get_bind().execute(sa.text("INSERT INTO crmkit_audit_head (id, seq, hash, anchor_seq, anchor_hash) VALUES (1, :s, :h, 0, :g)"),
                          {"s": seq, "h": prev, "g": GENESIS})
    op.create_table(
        "crmkit_consent",
        sa.Column("id", _bigid(), primary_key=True),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("record_id", sa.BigInteger, nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("purpose", sa.String(200), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("granted_at", UTCDateTime(), nullable=False),
        sa.Column("granted_by", sa.Integer),
        sa.Column("withdrawn_at", UTCDateTime()),
        sa.Column("withdrawn_by", sa.Integer),
    )
    op.create_index("ix_crmkit_consent_subject", "crmkit_consent", ["entity", "record_id", "channel"])


def _chain_existing_entries() -> tuple[int, str]:
    """Entries written before the chain existed join it in id order."""
    from crmkit.runtime.storage.platform_tables import audit

    bind = op.get_bind()
    seq, prev = 0, GENESIS
    for row in bind.execute(sa.select(audit.c.id, audit.c.at, audit.c.actor_id, audit.c.entity, audit.c.record_id, audit.c.action,
                                      audit.c.changes, audit.c.request_id).order_by(audit.c.id)).mappings().all():
        seq += 1
        entry = {**row, "seq": seq, "category": "record", "subject": None, "ip": None}
        digest = payload_hash(row["changes"])
        h = entry_hash(prev, entry, digest)
        bind.execute(audit.update().where(audit.c.id == row["id"]).values(seq=seq, payload_hash=digest, prev_hash=prev, hash=h))
        prev = h
    return seq, prev


def downgrade() -> None:
    op.drop_index("ix_crmkit_consent_subject", table_name="crmkit_consent")
    op.drop_table("crmkit_consent")
    op.drop_table("crmkit_audit_head")
    op.drop_index("ix_crmkit_audit_at", table_name="crmkit_audit")
    op.drop_index("ix_crmkit_audit_category", table_name="crmkit_audit")
    with op.batch_alter_table("crmkit_audit") as batch:
        batch.drop_constraint("uq_crmkit_audit_seq", type_="unique")
        for name in ("redacted", "hash", "prev_hash", "payload_hash", "ip", "subject", "category", "seq"):
            batch.drop_column(name)
        batch.alter_column("action", existing_type=sa.String(32), type_=sa.String(16), existing_nullable=False)
        batch.alter_column("record_id", existing_type=sa.BigInteger(), nullable=False)
        batch.alter_column("entity", existing_type=sa.String(100), nullable=False)

