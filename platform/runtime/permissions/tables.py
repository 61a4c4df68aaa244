"""Per-role field rules, row scopes and the policy version stamp.

Entity actions stay in Flask-AppBuilder's permission tables (``entity:<key>``); these tables sit
beside them. ``role_id`` refers to ``ab_role.id`` without a foreign key, because Flask-AppBuilder
creates its tables after the platform migrations run.
"""
from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Integer, String, Table, UniqueConstraint, false

from ..storage.platform_tables import metadata
from ..storage.types import json_type

# Field access levels, least to most: masked reads the value masked (never writable). ``access`` is a plain
# String(16) without a CHECK constraint, so a new level needs no migration; PermissionAdmin validates it.
FIELD_ACCESS = ("hidden", "masked", "read_only", "editable")
SCOPES = ("own", "org_unit", "org_subtree", "all", "custom")

field_rule = Table(
    "crmkit_field_rule", metadata,
    Column("id", Integer, primary_key=True),
    Column("role_id", Integer, nullable=False),
    Column("entity", String(100), nullable=False),
    Column("field", String(64), nullable=False),
    Column("access", String(16), nullable=False),
    Column("may_unmask", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("role_id", "entity", "field", name="uq_crmkit_field_rule"),
)

row_scope = Table(
    "crmkit_row_scope", metadata,
    Column("id", Integer, primary_key=True),
    Column("role_id", Integer, nullable=False),
    Column("entity", String(100), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("filter", json_type()),
    UniqueConstraint("role_id", "entity", name="uq_crmkit_row_scope"),
)

policy_stamp = Table(
    "crmkit_policy_stamp", metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)
