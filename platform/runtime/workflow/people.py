"""Who is who for workflows: role and post members, org managers, named users and delegations.

Every function takes the caller's connection, so lookups run inside the transition's transaction.
"""
from __future__ import annotations

import datetime as dt
from typing import Iterable, Sequence

from sqlalchemy import Connection, and_, delete, insert, or_, select

from ..org.tables import ab_role, ab_user, ab_user_role, post, post_role, user_org, user_post
from ..storage import platform_tables as pt
from .tables import approval_delegation, org_unit_manager


def role_names(conn: Connection, role_ids: Iterable[int]) -> set[str]:
    ids = list(role_ids)
    if not ids:
        return set()
    return set(conn.execute(select(ab_role.c.name).where(ab_role.c.id.in_(ids))).scalars())


def _active(ids: Iterable[int], conn: Connection) -> list[int]:
    ids = sorted(set(ids))
    if not ids:
        return []
    return sorted(conn.execute(select(ab_user.c.id).where(ab_user.c.id.in_(ids), ab_user.c.active.is_(True))).scalars())


def users_with_role(conn: Connection, name: str) -> list[int]:
    """Users holding the role directly or through a post (岗位) that carries it."""
    role_ids = select(ab_role.c.id).where(ab_role.c.name == name).scalar_subquery()
    direct: Sequence[int] = conn.execute(select(ab_user_role.c.user_id).where(ab_user_role.c.role_id == role_ids)).scalars().all()
    via_post: Sequence[int] = conn.execute(select(user_post.c.user_id).join(post_role, post_role.c.post_id == user_post.c.post_id)
                            .where(post_role.c.role_id == role_ids)).scalars().all()
    return _active(list(direct) + list(via_post), conn)


def users_with_post(conn: Connection, code: str) -> list[int]:
    ids: Sequence[int] = conn.execute(select(user_post.c.user_id).join(post, post.c.id == user_post.c.post_id).where(post.c.code == code)).scalars().all()
    return _active(ids, conn)


def user_id_of(conn: Connection, username: str) -> int | None:
    return conn.execute(select(ab_user.c.id).where(ab_user.c.username == username, ab_user.c.active.is_(True))).scalar()


def usernames(conn: Connection, ids: Iterable[int]) -> dict[int, str]:
    ids = [i for i in set(ids) if i is not None]
    if not ids:
        return {}
    return {r.id: r.username for r in conn.execute(select(ab_user.c.id, ab_user.c.username).where(ab_user.c.id.in_(ids)))}


def managers_of(conn: Connection, user_id: int | None) -> list[int]:
    """The org managers of a user: managers of the user's unit, else of the nearest ancestor unit that has
    a manager other than the user (a manager's manager is one level up)."""
    if user_id is None:
        return []
    unit_id = conn.execute(select(user_org.c.org_unit_id).where(user_org.c.user_id == user_id)).scalar()
    if unit_id is None:
        return []
    path = conn.execute(select(pt.org_unit.c.path).where(pt.org_unit.c.id == unit_id)).scalar() or ""
    chain = [int(p) for p in path.strip("/").split("/") if p.isdigit()] or [unit_id]
    rows = conn.execute(select(org_unit_manager.c.org_unit_id, org_unit_manager.c.user_id).where(org_unit_manager.c.org_unit_id.in_(chain))).all()
    by_unit: dict[int, list[int]] = {}
    for r in rows:
        by_unit.setdefault(r.org_unit_id, []).append(r.user_id)
    for uid in reversed(chain):
        found = [m for m in by_unit.get(uid, []) if m != user_id]
        if found:
            return _active(found, conn)
    return []


def unit_managers(conn: Connection, unit_id: int) -> list[int]:
    return sorted(conn.execute(select(org_unit_manager.c.user_id).where(org_unit_manager.c.org_unit_id == unit_id)).scalars())


def set_unit_managers(conn: Connection, unit_id: int, user_ids: Iterable[int]) -> None:
    conn.execute(delete(org_unit_manager).where(org_unit_manager.c.org_unit_id == unit_id))
    for uid in sorted(set(user_ids)):
        conn.execute(insert(org_unit_manager).values(org_unit_id=unit_id, user_id=uid))


def delegators_of(conn: Connection, delegate_id: int | None, now: dt.datetime) -> list[int]:
    """Users whose approvals ``delegate_id`` may decide right now (none for a service actor, whose id is None)."""
    d = approval_delegation
    return sorted(set(conn.execute(select(d.c.user_id).where(
        d.c.delegate_id == delegate_id, d.c.starts_at <= now, d.c.ends_at > now, d.c.revoked_at.is_(None))).scalars()))


def acts_for(conn: Connection, actor_id: int | None, assignee_id: int, now: dt.datetime) -> bool:
    return actor_id == assignee_id or assignee_id in delegators_of(conn, actor_id, now)


def active_delegation_clause(now: dt.datetime):
    d = approval_delegation
    return and_(d.c.starts_at <= now, d.c.ends_at > now, or_(d.c.revoked_at.is_(None)))


def active_users(conn: Connection) -> list[tuple[int, str]]:
    """(id, "username · first last") of active users, for pickers."""
    rows = conn.execute(select(ab_user.c.id, ab_user.c.username, ab_user.c.first_name, ab_user.c.last_name)
                        .where(ab_user.c.active.is_(True)).order_by(ab_user.c.username).limit(500))
    return [(r.id, f"{r.username} · {r.first_name or ''} {r.last_name or ''}".strip()) for r in rows]
