"""Org-structure tables on the platform metadata, plus read views of the FAB tables actor resolution joins.

The org-unit tree itself is ``crmkit_org_unit`` (in ``storage.platform_tables``): every unit
stores its materialized ``path`` of ancestor ids, ``/1/4/9/`` for unit 9 under 4 under 1, so a
subtree is one prefix match.
"""
from __future__ import annotations

from flask_appbuilder.security.sqla import models as fab_models
from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table

from ..storage import platform_tables as pt
from ..storage.entity_tables import pk_type

metadata = pt.metadata
org_unit = pt.org_unit

UNIT_KINDS = ("group", "region", "company", "department")

Index("ix_crmkit_org_unit_path", org_unit.c.path, postgresql_ops={"path": "varchar_pattern_ops"})
Index("ix_crmkit_org_unit_parent", org_unit.c.parent_id)

post = Table(
    "crmkit_post", metadata,
    Column("id", pk_type(), primary_key=True),
    Column("org_unit_id", BigInteger, ForeignKey("crmkit_org_unit.id"), nullable=True),
    Column("name", String(200), nullable=False),
    Column("code", String(64), nullable=False, unique=True),
    Column("description", String(1000)),
)

# Roles a post carries (ab_role ids; FAB creates its tables after the platform migrations, so no FK).
post_role = Table(
    "crmkit_post_role", metadata,
    Column("post_id", BigInteger, ForeignKey("crmkit_post.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", Integer, primary_key=True),
)

# One org unit per user (ab_user ids).
user_org = Table(
    "crmkit_user_org", metadata,
    Column("user_id", Integer, primary_key=True),
    Column("org_unit_id", BigInteger, ForeignKey("crmkit_org_unit.id"), nullable=False),
    Index("ix_crmkit_user_org_unit", "org_unit_id"),
)

user_post = Table(
    "crmkit_user_post", metadata,
    Column("user_id", Integer, primary_key=True),
    Column("post_id", BigInteger, ForeignKey("crmkit_post.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_crmkit_user_post_post", "post_id"),
)

# Flask-AppBuilder's security tables, as FAB defines them (its own Table objects, so inserts get FAB's id sequences).
ab_user: Table = fab_models.User.__table__
ab_role: Table = fab_models.Role.__table__
ab_user_role: Table = fab_models.assoc_user_role
ab_permission: Table = fab_models.Permission.__table__
ab_view_menu: Table = fab_models.ViewMenu.__table__
ab_permission_view: Table = fab_models.PermissionView.__table__
ab_permission_view_role: Table = fab_models.assoc_permissionview_role
ab_user_group: Table = fab_models.assoc_user_group
ab_group_role: Table = fab_models.assoc_group_role
