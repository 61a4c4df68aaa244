"""The points ledger's own tables (app-owned: declared through ``AppHooks.tables``, created by the installer).

- ``account``: one row per (kind, member, currency). Member-owned accounts (``wallet``, ``pending``) keep a
  materialised ``balance`` that changes in the same transaction as every line posted to them, under a row lock.
  Counter accounts (liability, redeemed, expired, merchant) are shared by every posting; locking one row for
  each posting would serialise the whole ledger, so their balance is left NULL and read as Σ lines.
- ``entry`` + ``line``: the journal. Append-only — database triggers refuse UPDATE and DELETE — and every
  entry's lines sum to zero. ``idempotency_key`` is UNIQUE and derived from the source document.
- ``lot``: FIFO earn lots of a wallet with the remaining amount and expiry; Σ remaining = the wallet balance.
- ``adjustment``: manual adjustments waiting for a second person's approval (not postings until approved).
- ``redemption``: what was redeemed (catalogue item, quantity) per entry, for per-member limits.
"""
from __future__ import annotations

from sqlalchemy import DDL, BigInteger, Column, ForeignKey, Index, Integer, MetaData, String, Table, UniqueConstraint, event, text

from crmkit.runtime.storage.types import UTCDateTime, json_type

metadata = MetaData()
ID = BigInteger().with_variant(Integer, "sqlite")

CURRENCIES = ("reward", "upgrade")
MEMBER_KINDS = ("wallet", "pending")
COUNTER_KINDS = ("liability", "redeemed", "expired", "merchant")

account = Table(
    "membership_pts_account", metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("member_id", BigInteger, nullable=False),  # 0 for counter accounts
    Column("currency", String(16), nullable=False),
    Column("balance", BigInteger),  # NULL for counter accounts (see module docstring)
    Column("updated_at", UTCDateTime()),
    UniqueConstraint("kind", "member_id", "currency", name="uq_membership_pts_account"),
)

entry = Table(
    "membership_pts_entry", metadata,
    Column("id", ID, primary_key=True),
    Column("idempotency_key", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # earn, earn_pending, confirm, redeem, expire, reverse, adjust
    Column("currency", String(16), nullable=False),
    Column("member_id", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),  # signed effect on the member (wallet + pending)
    Column("source_type", String(32), nullable=False),
    Column("source_id", String(64)),
    Column("reversal_of", ID, ForeignKey("membership_pts_entry.id")),
    Column("memo", String(500)),
    Column("details", json_type()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", Integer),
    UniqueConstraint("idempotency_key", name="uq_membership_pts_entry_key"),
    Index("ix_membership_pts_entry_member", "member_id", "id"),
    Index("ix_membership_pts_entry_source", "source_type", "source_id"),
    Index("ix_membership_pts_entry_reversal", "reversal_of"),
)

line = Table(
    "membership_pts_line", metadata,
    Column("id", ID, primary_key=True),
    Column("entry_id", ID, ForeignKey("membership_pts_entry.id"), nullable=False),
    Column("account_id", ID, ForeignKey("membership_pts_account.id"), nullable=False),
    Column("currency", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Index("ix_membership_pts_line_entry", "entry_id"),
    Index("ix_membership_pts_line_account", "account_id"),
)

lot = Table(
    "membership_pts_lot", metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("membership_pts_account.id"), nullable=False),
    Column("entry_id", ID, ForeignKey("membership_pts_entry.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    Column("expires_at", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
    # Open lots only (partial index): FIFO consumption reads a wallet's oldest open lots without scanning spent ones.
    Index("ix_membership_pts_lot_open", "account_id", "id", postgresql_where=text("remaining > 0"), sqlite_where=text("remaining > 0")),
    Index("ix_membership_pts_lot_entry", "entry_id"),
    Index("ix_membership_pts_lot_expiry", "expires_at", "remaining"),
)

adjustment = Table(
    "membership_pts_adjustment", metadata,
    Column("id", ID, primary_key=True),
    Column("member_id", BigInteger, nullable=False),
    Column("currency", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("reason", String(500), nullable=False),
    Column("status", String(16), nullable=False),  # pending, approved, rejected
    Column("requested_by", Integer),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("decided_by", Integer),
    Column("decided_at", UTCDateTime()),
    Column("entry_id", ID, ForeignKey("membership_pts_entry.id")),
    Index("ix_membership_pts_adjustment_status", "status", "id"),
)

redemption = Table(
    "membership_pts_redemption", metadata,
    Column("id", ID, primary_key=True),
    Column("entry_id", ID, ForeignKey("membership_pts_entry.id"), nullable=False),
    Column("member_id", BigInteger, nullable=False),
    Column("item_id", BigInteger, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_membership_pts_redemption_member", "member_id", "item_id"),
)

APPEND_ONLY = (entry, line)


def _refuse_changes(table: Table) -> None:
    name = table.name
    event.listen(table, "after_create", DDL(
        f"CREATE TRIGGER {name}_no_update BEFORE UPDATE ON {name} BEGIN SELECT RAISE(ABORT, 'ledger postings are append-only'); END"
    ).execute_if(dialect="sqlite"))
    event.listen(table, "after_create", DDL(
        f"CREATE TRIGGER {name}_no_delete BEFORE DELETE ON {name} BEGIN SELECT RAISE(ABORT, 'ledger postings are append-only'); END"
    ).execute_if(dialect="sqlite"))
    event.listen(table, "after_create", DDL(
        f"CREATE OR REPLACE FUNCTION {name}_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN RAISE EXCEPTION 'ledger postings are append-only'; END $$; "
        f"CREATE TRIGGER {name}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {name} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {name}_refuse()"
    ).execute_if(dialect="postgresql"))


for _t in APPEND_ONLY:
    _refuse_changes(_t)
