"""OrgService: the one write path for the org tree, posts (岗位) and who belongs where.

Every change runs in one write transaction and writes a ``permission`` audit event (a unit move
or a post's roles change what people may see). Structural tree changes are serialised (the
SQLite write lock; on PostgreSQL a table lock that blocks other tree writers, not readers), so two
concurrent moves can never build a cycle or leave stale paths.
"""
from __future__ import annotations

import re
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from sqlalchemy import Connection, Engine, delete, exists, func, insert, literal, select, update

from ..actor import Actor
from ..audit.service import record_event
from ..db import write_transaction
from ..errors import RecordNotFound, ValidationFailed
from ..i18n_text import Text, join, text
from .tables import UNIT_KINDS, ab_role, ab_user, ab_user_role, org_unit, post, post_role, user_org, user_post
from .tree import child_path

CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_NAME = 200
MAX_DESCRIPTION = 1000

# Columns of record tables that may point at org units, for the "still in use" check on delete.
ReferencingColumns = Callable[[], Iterable[Any]]


@dataclass(frozen=True)
class Unit:
    id: int
    parent_id: int | None
    name: str
    code: str
    kind: str
    path: str

    @property
    def depth(self) -> int:
        return self.path.strip("/").count("/")


@dataclass(frozen=True)
class Post:
    id: int
    org_unit_id: int | None
    name: str
    code: str
    description: str
    role_ids: tuple[int, ...]


@dataclass(frozen=True)
class Membership:
    user_id: int
    org_unit_id: int | None
    post_ids: tuple[int, ...]
    role_ids: tuple[int, ...]


def _unit(row) -> Unit:
    return Unit(id=row.id, parent_id=row.parent_id, name=row.name, code=row.code, kind=row.kind, path=row.path)


class OrgService:
    def __init__(self, engine: Engine, *, admin_role: str = "Admin", referencing_columns: ReferencingColumns = tuple):
        self.engine = engine
        self.admin_role = admin_role
        self.referencing_columns = referencing_columns

    # --- reading ----------------------------------------------------------------------
    def units(self, conn: Connection | None = None) -> list[Unit]:
        """All units in tree order (parents before children, siblings by name)."""
        with self._conn(conn) as c:
            rows = c.execute(select(org_unit)).all()
        units = [_unit(r) for r in rows]
        by_id = {u.id: u for u in units}

        def sort_key(u: Unit) -> tuple:
            return tuple((by_id[i].name.lower(), i) if i in by_id else ("", i) for i in _path_ids(u.path))

        return sorted(units, key=sort_key)

    def unit(self, unit_id: int, conn: Connection | None = None) -> Unit:
        with self._conn(conn) as c:
            row = c.execute(select(org_unit).where(org_unit.c.id == unit_id)).first()
        if row is None:
            raise RecordNotFound(text("There is no org unit with id {id}.", "没有编号为 {id} 的组织单元。", id=unit_id))
        return _unit(row)

    def posts(self) -> list[Post]:
        with self.engine.connect() as c:
            rows = c.execute(select(post).order_by(post.c.name, post.c.id)).all()
            roles: dict[int, list[int]] = {}
            for pid, rid in c.execute(select(post_role.c.post_id, post_role.c.role_id).order_by(post_role.c.role_id)).tuples():
                roles.setdefault(pid, []).append(rid)
        return [Post(id=r.id, org_unit_id=r.org_unit_id, name=r.name, code=r.code, description=r.description or "",
                     role_ids=tuple(roles.get(r.id, ()))) for r in rows]

    def post(self, post_id: int) -> Post:
        for p in self.posts():
            if p.id == post_id:
                return p
        raise RecordNotFound(text("There is no post with id {id}.", "没有编号为 {id} 的岗位。", id=post_id))

    def roles(self) -> list[tuple[int, str]]:
        with self.engine.connect() as c:
            return [(r.id, r.name) for r in c.execute(select(ab_role.c.id, ab_role.c.name).order_by(ab_role.c.name))]

    def users(self) -> list[dict]:
        """Every user with their unit, posts and direct roles."""
        with self.engine.connect() as c:
            users = c.execute(select(ab_user.c.id, ab_user.c.username, ab_user.c.first_name, ab_user.c.last_name, ab_user.c.active)
                              .order_by(ab_user.c.username)).all()
            units: dict[int, int] = dict(c.execute(select(user_org.c.user_id, user_org.c.org_unit_id)).all())
            posts: dict[int, list[int]] = {}
            for uid, pid in c.execute(select(user_post.c.user_id, user_post.c.post_id)).tuples():
                posts.setdefault(uid, []).append(pid)
            roles: dict[int, list[int]] = {}
            for uid, rid in c.execute(select(ab_user_role.c.user_id, ab_user_role.c.role_id)).tuples():
                roles.setdefault(uid, []).append(rid)
        return [{"id": u.id, "username": u.username, "name": f"{u.first_name or ''} {u.last_name or ''}".strip(), "active": bool(u.active),
                 "org_unit_id": units.get(u.id), "post_ids": sorted(posts.get(u.id, [])), "role_ids": sorted(roles.get(u.id, []))}
                for u in users]

    def membership(self, user_id: int) -> Membership:
        with self.engine.connect() as c:
            self._require_user(c, user_id)
            unit = c.execute(select(user_org.c.org_unit_id).where(user_org.c.user_id == user_id)).scalar()
            posts: Sequence[int] = c.execute(select(user_post.c.post_id).where(user_post.c.user_id == user_id).order_by(user_post.c.post_id)).scalars().all()
            roles: Sequence[int] = c.execute(select(ab_user_role.c.role_id).where(ab_user_role.c.user_id == user_id).order_by(ab_user_role.c.role_id)).scalars().all()
        return Membership(user_id=user_id, org_unit_id=unit, post_ids=tuple(posts), role_ids=tuple(roles))

    def unit_counts(self) -> dict[int, dict[str, int]]:
        """Per unit: direct members and posts (for the tree page)."""
        out: dict[int, dict[str, int]] = {}
        with self.engine.connect() as c:
            for uid, n in c.execute(select(user_org.c.org_unit_id, func.count()).group_by(user_org.c.org_unit_id)).tuples():
                out.setdefault(uid, {"members": 0, "posts": 0})["members"] = n
            for uid, n in c.execute(select(post.c.org_unit_id, func.count()).where(post.c.org_unit_id.is_not(None)).group_by(post.c.org_unit_id)).tuples():
                out.setdefault(uid, {"members": 0, "posts": 0})["posts"] = n
        return out

    # --- the tree ---------------------------------------------------------------------
    def create_unit(self, actor: Actor, *, name: Any, code: Any, kind: Any = "department", parent_id: Any = None) -> int:
        name, code, kind = self._unit_fields(name, code, kind)
        with self._tree_transaction() as conn:
            errors: dict[str, list[Text]] = {}
            parent = self._parent(conn, parent_id, errors)
            self._code_free(conn, org_unit, code, None, errors)
            _raise(errors)
            new_id: int = conn.execute(insert(org_unit).values(name=name, code=code, kind=kind, parent_id=parent_id, path="/")
                                  .returning(org_unit.c.id)).scalar_one()
            path = child_path(parent.path if parent else None, new_id)
            conn.execute(update(org_unit).where(org_unit.c.id == new_id).values(path=path))
            self._audit(conn, actor, "org_unit_create", new_id, {"name": name, "code": code, "kind": kind, "parent_id": parent_id})
        return new_id

    def update_unit(self, actor: Actor, unit_id: int, *, name: Any, code: Any, kind: Any) -> None:
        name, code, kind = self._unit_fields(name, code, kind)
        with write_transaction(self.engine) as conn:
            before = self.unit(unit_id, conn)
            errors: dict[str, list[Text]] = {}
            self._code_free(conn, org_unit, code, unit_id, errors)
            _raise(errors)
            conn.execute(update(org_unit).where(org_unit.c.id == unit_id).values(name=name, code=code, kind=kind))
            self._audit(conn, actor, "org_unit_update", unit_id, _diff(before, {"name": name, "code": code, "kind": kind}))

    def move_unit(self, actor: Actor, unit_id: int, new_parent_id: Any) -> int:
        """Move a unit (with its subtree) under another unit, or to the top when ``new_parent_id`` is None.

        Returns how many units changed path. Refuses a move into the unit's own subtree.
        """
        with self._tree_transaction() as conn:
            unit = self.unit(unit_id, conn)
            errors: dict[str, list[Text]] = {}
            parent = self._parent(conn, new_parent_id, errors)
            if parent is not None and parent.path.startswith(unit.path):
                errors.setdefault("parent_id", []).append(text(
                    "A unit cannot move under itself or one of its own sub-units; pick a unit outside “{name}”.",
                    "不能把单元移到它自己或它的下级单元之下；请选择“{name}”之外的单元。", name=unit.name))
            _raise(errors)
            new_path = child_path(parent.path if parent else None, unit_id)
            if new_path == unit.path:
                return 0
            old_len = len(unit.path)
            moved = conn.execute(
                update(org_unit).where(org_unit.c.path.like(unit.path + "%"))
                .values(path=literal(new_path) + func.substr(org_unit.c.path, old_len + 1))
            ).rowcount
            conn.execute(update(org_unit).where(org_unit.c.id == unit_id).values(parent_id=parent.id if parent else None))
            self._audit(conn, actor, "org_unit_move", unit_id, {"parent_id": [unit.parent_id, parent.id if parent else None],
                                                                 "path": [unit.path, new_path], "units_moved": moved})
        return moved

    def delete_unit(self, actor: Actor, unit_id: int) -> None:
        """Delete an empty unit: no sub-units, members, posts or records pointing at it."""
        with self._tree_transaction() as conn:
            unit = self.unit(unit_id, conn)
            reasons: list[Text] = []
            if conn.execute(select(exists().where(org_unit.c.parent_id == unit_id))).scalar():
                reasons.append(text("it has sub-units (move or delete them first)", "它还有下级单元（请先移走或删除）"))
            if conn.execute(select(exists().where(user_org.c.org_unit_id == unit_id))).scalar():
                reasons.append(text("users belong to it (assign them elsewhere first)", "还有用户属于它（请先把他们分配到其他单元）"))
            if conn.execute(select(exists().where(post.c.org_unit_id == unit_id))).scalar():
                reasons.append(text("posts belong to it (move or delete them first)", "还有岗位属于它（请先移走或删除）"))
            if any(conn.execute(select(exists().where(col == unit_id))).scalar() for col in self.referencing_columns()):
                reasons.append(text("records belong to it (reassign them first)", "还有记录属于它（请先重新分配）"))
            if reasons:
                raise ValidationFailed({"id": reasons}, text("“{name}” cannot be deleted: {why}.", "无法删除“{name}”：{why}。",
                                                             name=unit.name, why=_join(reasons)))
            conn.execute(delete(org_unit).where(org_unit.c.id == unit_id))
            self._audit(conn, actor, "org_unit_delete", unit_id, {"name": unit.name, "code": unit.code, "path": unit.path})

    # --- posts ------------------------------------------------------------------------
    def create_post(self, actor: Actor, *, name: Any, code: Any, org_unit_id: Any = None, description: Any = "",
                    role_ids: Iterable[Any] = ()) -> int:
        name, code, description = self._post_fields(name, code, description)
        with write_transaction(self.engine) as conn:
            errors: dict[str, list[Text]] = {}
            self._parent(conn, org_unit_id, errors, field="org_unit_id")
            self._code_free(conn, post, code, None, errors)
            roles = self._roles(conn, role_ids, errors)
            _raise(errors)
            post_id: int = conn.execute(insert(post).values(name=name, code=code, org_unit_id=org_unit_id, description=description)
                                   .returning(post.c.id)).scalar_one()
            if roles:
                conn.execute(insert(post_role), [{"post_id": post_id, "role_id": r} for r in roles])
            self._audit(conn, actor, "post_create", post_id, {"name": name, "code": code, "org_unit_id": org_unit_id, "role_ids": roles},
                        entity="org.post")
        return post_id

    def update_post(self, actor: Actor, post_id: int, *, name: Any, code: Any, org_unit_id: Any = None, description: Any = "",
                    role_ids: Iterable[Any] = ()) -> None:
        name, code, description = self._post_fields(name, code, description)
        before = self.post(post_id)
        with write_transaction(self.engine) as conn:
            errors: dict[str, list[Text]] = {}
            self._parent(conn, org_unit_id, errors, field="org_unit_id")
            self._code_free(conn, post, code, post_id, errors)
            roles = self._roles(conn, role_ids, errors)
            _raise(errors)
            conn.execute(update(post).where(post.c.id == post_id).values(name=name, code=code, org_unit_id=org_unit_id, description=description))
            conn.execute(delete(post_role).where(post_role.c.post_id == post_id))
            if roles:
                conn.execute(insert(post_role), [{"post_id": post_id, "role_id": r} for r in roles])
            changes = _diff(before, {"name": name, "code": code, "org_unit_id": org_unit_id, "description": description})
            if tuple(roles) != before.role_ids:
                changes["role_ids"] = [list(before.role_ids), roles]
            self._audit(conn, actor, "post_update", post_id, changes, entity="org.post")

    def delete_post(self, actor: Actor, post_id: int) -> None:
        before = self.post(post_id)
        with write_transaction(self.engine) as conn:
            holders: Sequence[int] = conn.execute(select(user_post.c.user_id).where(user_post.c.post_id == post_id)).scalars().all()
            conn.execute(delete(user_post).where(user_post.c.post_id == post_id))
            conn.execute(delete(post_role).where(post_role.c.post_id == post_id))
            conn.execute(delete(post).where(post.c.id == post_id))
            self._audit(conn, actor, "post_delete", post_id, {"name": before.name, "code": before.code, "role_ids": list(before.role_ids),
                                                              "holders": sorted(holders)}, entity="org.post")

    # --- users ------------------------------------------------------------------------
    def assign_user(self, actor: Actor, user_id: int, *, org_unit_id: Any = None, post_ids: Iterable[Any] = (),
                    role_ids: Iterable[Any] = ()) -> None:
        """Set a user's org unit (None: none), posts and direct roles in one go."""
        before = self.membership(user_id)
        with write_transaction(self.engine) as conn:
            errors: dict[str, list[Text]] = {}
            self._parent(conn, org_unit_id, errors, field="org_unit_id")
            posts = self._ids(conn, post, post_ids, errors, "post_ids",
                              text("There is no post with id {id}.", "没有编号为 {id} 的岗位。"))
            roles = self._roles(conn, role_ids, errors)
            _raise(errors)
            self._keep_an_admin(conn, user_id, roles)
            conn.execute(delete(user_org).where(user_org.c.user_id == user_id))
            if org_unit_id is not None:
                conn.execute(insert(user_org).values(user_id=user_id, org_unit_id=org_unit_id))
            conn.execute(delete(user_post).where(user_post.c.user_id == user_id))
            if posts:
                conn.execute(insert(user_post), [{"user_id": user_id, "post_id": p} for p in posts])
            if tuple(roles) != before.role_ids:
                conn.execute(delete(ab_user_role).where(ab_user_role.c.user_id == user_id))
                for r in roles:  # one by one: FAB's id column takes its value from a sequence on PostgreSQL
                    conn.execute(insert(ab_user_role).values(user_id=user_id, role_id=r))
            changes = {}
            for key, old, new in (("org_unit_id", before.org_unit_id, org_unit_id), ("post_ids", list(before.post_ids), posts),
                                  ("role_ids", list(before.role_ids), roles)):
                if old != new:
                    changes[key] = [old, new]
            self._audit(conn, actor, "user_assign", user_id, changes, entity="org.user")

    # --- helpers ----------------------------------------------------------------------
    def _conn(self, conn: Connection | None):
        return nullcontext(conn) if conn is not None else self.engine.connect()

    @contextmanager
    def _tree_transaction(self) -> Iterator[Connection]:
        """A write transaction holding the tree lock (PostgreSQL: blocks other tree writers, not readers)."""
        with write_transaction(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("LOCK TABLE crmkit_org_unit IN SHARE ROW EXCLUSIVE MODE")
            yield conn

    def _audit(self, conn: Connection, actor: Actor, action: str, target_id: int, changes: dict, entity: str = "org.unit") -> None:
        record_event(conn, category="permission", action=action, actor_id=actor.id, entity=entity, record_id=target_id, changes=changes)

    @staticmethod
    def _unit_fields(name: Any, code: Any, kind: Any) -> tuple[str, str, str]:
        errors: dict[str, list[Text]] = {}
        name = _name(name, errors)
        code = _code(code, errors)
        if kind not in UNIT_KINDS:
            errors["kind"] = [text("Pick one of the kinds: {kinds}.", "请从这些类型中选择：{kinds}。", kinds=", ".join(UNIT_KINDS))]
        _raise(errors)
        return name, code, kind

    @staticmethod
    def _post_fields(name: Any, code: Any, description: Any) -> tuple[str, str, str]:
        errors: dict[str, list[Text]] = {}
        name = _name(name, errors)
        code = _code(code, errors)
        description = "" if description is None else description
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            errors["description"] = [text("Keep the description text under {n} characters.", "说明最多 {n} 个字符。", n=MAX_DESCRIPTION)]
        _raise(errors)
        return name, code, description.strip()

    def _parent(self, conn: Connection, unit_id: Any, errors: dict, field: str = "parent_id") -> Unit | None:
        if unit_id is None:
            return None
        if not _is_id(unit_id):
            errors.setdefault(field, []).append(text("Pick an org unit from the list.", "请从列表中选择组织单元。"))
            return None
        row = conn.execute(select(org_unit).where(org_unit.c.id == unit_id)).first()
        if row is None:
            errors.setdefault(field, []).append(text("There is no org unit with id {id}.", "没有编号为 {id} 的组织单元。", id=unit_id))
            return None
        return _unit(row)

    @staticmethod
    def _code_free(conn: Connection, table, code: str, own_id: int | None, errors: dict) -> None:
        q = select(table.c.id).where(func.lower(table.c.code) == code.lower())
        if own_id is not None:
            q = q.where(table.c.id != own_id)
        if code and conn.execute(q).first() is not None:
            errors.setdefault("code", []).append(text("The code “{code}” is already used; pick another one.",
                                                      "编码“{code}”已被使用，请换一个。", code=code))

    def _roles(self, conn: Connection, role_ids: Iterable[Any], errors: dict) -> list[int]:
        return self._ids(conn, ab_role, role_ids, errors, "role_ids", text("There is no role with id {id}.", "没有编号为 {id} 的角色。"))

    @staticmethod
    def _ids(conn: Connection, table, ids: Iterable[Any], errors: dict, field: str, missing: Text) -> list[int]:
        ids = list(ids or ())
        if not all(_is_id(i) for i in ids):
            errors.setdefault(field, []).append(text("Pick entries from the list.", "请从列表中选择。"))
            return []
        wanted = sorted(set(ids))
        found: set[int] = set(conn.execute(select(table.c.id).where(table.c.id.in_(wanted))).scalars()) if wanted else set()
        for i in wanted:
            if i not in found:
                errors.setdefault(field, []).append(missing.format(id=i))
        return wanted

    def _require_user(self, conn: Connection, user_id: int) -> None:
        if not _is_id(user_id) or conn.execute(select(ab_user.c.id).where(ab_user.c.id == user_id)).first() is None:
            raise RecordNotFound(text("There is no user with id {id}.", "没有编号为 {id} 的用户。", id=user_id))

    def _keep_an_admin(self, conn: Connection, user_id: int, new_roles: list[int]) -> None:
        """Refuse to take the admin role from the last active user holding it directly."""
        admin_id = conn.execute(select(ab_role.c.id).where(ab_role.c.name == self.admin_role)).scalar()
        if admin_id is None or admin_id in new_roles:
            return
        others = conn.execute(select(func.count()).select_from(ab_user_role.join(ab_user, ab_user.c.id == ab_user_role.c.user_id))
                              .where(ab_user_role.c.role_id == admin_id, ab_user_role.c.user_id != user_id, ab_user.c.active.is_(True))).scalar()
        holds = conn.execute(select(exists().where(ab_user_role.c.user_id == user_id, ab_user_role.c.role_id == admin_id))).scalar()
        if holds and not others:
            raise ValidationFailed({"role_ids": [text("This is the last administrator; give another user the {role} role first.",
                                                      "这是最后一位管理员；请先把 {role} 角色授予另一位用户。", role=self.admin_role)]})


def _path_ids(path: str) -> list[int]:
    return [int(p) for p in path.strip("/").split("/") if p]


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _name(value: Any, errors: dict) -> str:
    if not isinstance(value, str) or not value.strip():
        errors["name"] = [text("Enter a name.", "请填写名称。")]
        return ""
    if len(value.strip()) > MAX_NAME:
        errors["name"] = [text("Keep the name under {n} characters.", "名称最多 {n} 个字符。", n=MAX_NAME)]
    return value.strip()


def _code(value: Any, errors: dict) -> str:
    value = value.strip() if isinstance(value, str) else value
    if not isinstance(value, str) or not CODE_RE.match(value):
        errors["code"] = [text("Use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit (e.g. east-sales).",
                               "编码为 1-64 个字母、数字、“_”、“-”或“.”，以字母或数字开头（如 east-sales）。")]
        return ""
    return value


def _raise(errors: dict) -> None:
    if errors:
        raise ValidationFailed(errors, text("Some fields are not valid; fix them and submit again.", "有些字段不正确，请修改后重新提交。"))


def _join(parts: list[Text]) -> Text:
    return join(parts, "; ", "；")


def _diff(before, after: dict) -> dict:
    return {k: [getattr(before, k), v] for k, v in after.items() if getattr(before, k) != v}
