"""Org subtrees by materialized path: unit 9 under 4 under 1 has path ``/1/4/9/``.

A unit's subtree (itself and every descendant) is ``path LIKE '<its path>%'``. Row scopes use
``subtree_ids_select`` inside their own query, so a scope costs no extra statement.
"""
from __future__ import annotations

from sqlalchemy import Connection, Select, select
from sqlalchemy.sql import ColumnElement

from .tables import org_unit


def child_path(parent_path: str | None, unit_id: int) -> str:
    return f"{parent_path or '/'}{unit_id}/"


def path_prefix_clause(path: str) -> ColumnElement[bool]:
    """``crmkit_org_unit.path LIKE '<path>%'``: the unit with that path and its descendants."""
    if not (path.startswith("/") and path.endswith("/") and path.strip("/").replace("/", "").isdigit()):
        raise ValueError(f"not an org-unit path: {path!r}")
    return org_unit.c.path.like(path + "%")


def subtree_ids_select(unit_id: int) -> Select:
    """SELECT of the ids of ``unit_id`` and all its descendants (no rows when the unit does not exist).

    Use it as ``table.c.org_unit_id.in_(subtree_ids_select(actor.org_unit_id))``.
    """
    own_path = select(org_unit.c.path).where(org_unit.c.id == unit_id).scalar_subquery()
    return select(org_unit.c.id).where(org_unit.c.path.like(own_path + "%"))


def org_subtree_ids(conn: Connection, unit_id: int) -> list[int]:
    """Ids of ``unit_id`` and all its descendants, the unit first, then by path."""
    return [row[0] for row in conn.execute(subtree_ids_select(unit_id).order_by(org_unit.c.path))]


def ancestor_ids(path: str) -> list[int]:
    """Ids on a path from the root down to the unit itself: ``/1/4/9/`` → [1, 4, 9]."""
    return [int(part) for part in path.strip("/").split("/") if part]
