"""Helpers shared by the org-structure tests (tests/test_org*.py)."""
from __future__ import annotations

from sqlalchemy import func, select

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.org.service import OrgService
from crmkit.runtime.org.tables import org_unit, post, user_org, user_post
from crmkit.runtime.storage import platform_tables as pt

PASSWORD = "staff-pass-123"


def org(app) -> OrgService:
    return OrgService(app.extensions["crmkit"].engine)


def build_tree(svc: OrgService) -> dict[str, int]:
    """group → 2 regions → companies → departments (4 levels)."""
    ids = {}
    ids["group"] = svc.create_unit(SYSTEM, name="华夏集团", code="hx", kind="group")
    ids["east"] = svc.create_unit(SYSTEM, name="华东区", code="east", kind="region", parent_id=ids["group"])
    ids["north"] = svc.create_unit(SYSTEM, name="华北区", code="north", kind="region", parent_id=ids["group"])
    ids["sh"] = svc.create_unit(SYSTEM, name="上海公司", code="sh", kind="company", parent_id=ids["east"])
    ids["bj"] = svc.create_unit(SYSTEM, name="北京公司", code="bj", kind="company", parent_id=ids["north"])
    ids["sh_sales"] = svc.create_unit(SYSTEM, name="上海销售部", code="sh-sales", kind="department", parent_id=ids["sh"])
    return ids


def paths(app) -> dict[int, tuple[int | None, str]]:
    with app.extensions["crmkit"].engine.connect() as c:
        return {r.id: (r.parent_id, r.path) for r in c.execute(select(org_unit))}


def assert_paths_consistent(app) -> None:
    """Every unit's path is its parent's path plus its own id, and no unit is its own ancestor."""
    rows = paths(app)
    for uid, (parent, path) in rows.items():
        expected = (rows[parent][1] if parent else "/") + f"{uid}/"
        assert path == expected, (uid, parent, path, expected)
        ids = [int(p) for p in path.strip("/").split("/")]
        assert len(ids) == len(set(ids)), path


def table_counts(app) -> dict[str, int]:
    with app.extensions["crmkit"].engine.connect() as c:
        return {t.name: c.execute(select(func.count()).select_from(t)).scalar_one() for t in (org_unit, post, user_org, user_post)}


def audit_actions(app, category: str = "permission") -> list[tuple[str, str | None, int | None, dict]]:
    with app.extensions["crmkit"].engine.connect() as c:
        rows = c.execute(select(pt.audit.c.action, pt.audit.c.entity, pt.audit.c.record_id, pt.audit.c.changes)
                         .where(pt.audit.c.category == category).order_by(pt.audit.c.id)).all()
    return [tuple(r) for r in rows]


def add_role(app, name: str, grants: list[tuple[str, str]] = ()) -> int:
    """A FAB role with entity permissions, e.g. [("read", "entity:membership.member")]."""
    with app.app_context():
        sm = app.appbuilder.sm
        role = sm.add_role(name)
        for action, resource in grants:
            pv = sm.find_permission_view_menu(action, resource)
            assert pv is not None, (action, resource)
            sm.add_permission_role(role, pv)
        role_id = role.id
        app.extensions["sqlalchemy"].session.remove()
    return role_id


def add_user(app, username: str, roles: list[str] = ()) -> int:
    """A FAB user with the given direct roles (may be none)."""
    with app.app_context():
        sm = app.appbuilder.sm
        role_objs = [sm.find_role(r) for r in roles]
        user = sm.add_user(username, username.title(), "Tester", f"{username}@example.com", role_objs or [], PASSWORD)
        assert user, f"could not create user {username}"
        user_id = user.id
        app.extensions["sqlalchemy"].session.remove()
    return user_id
