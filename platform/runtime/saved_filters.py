"""Saved list filters that users keep for themselves or share with roles (``crmkit_saved_filter``).

View definitions carry filters designed in the builder; these are the ones people save from a list page.
A saved filter is only a stored filter tree and sort: whoever applies it runs it through the query
service as themselves, so their own row scope and field rules apply (a shared filter naming a field the
viewer cannot read is refused by the query service, it never reveals data). Filters are validated by the
query service when saved, for the saver, so nothing that would not run is stored. Who may share with
roles is the policy point's decision (``Policy.may_share_filters``).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from sqlalchemy import Engine, delete, or_, select
from sqlalchemy.exc import IntegrityError

from .actor import Actor
from .audit import record_event
from .db import write_transaction
from .errors import BadQuery, PermissionDenied, RecordNotFound, ValidationFailed
from .i18n_text import text
from .meta.store import MetadataStore
from .permissions.rules import ab_role
from .policy import Policy
from .query import QueryService
from .storage import platform_tables as pt

KEY = re.compile(r"^sf-([1-9][0-9]{0,9})$")  # the id in URLs; view filter names cannot contain "-", so they never clash
MAX_NAME = 100
MAX_PER_USER = 50
MAX_ROLES = 50


def filter_key(filter_id: int) -> str:
    return f"sf-{filter_id}"


def parse_key(saved: str | None) -> int | None:
    """The saved filter's id in ``?saved=sf-12``, or None for anything else (a view filter's name)."""
    m = KEY.match(saved or "")
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class UserFilter:
    id: int
    entity: str
    owner_id: int
    name: str
    filter: Mapping[str, Any]
    sort: str | None
    role_ids: tuple[int, ...]
    updated_at: dt.datetime

    @property
    def key(self) -> str:
        return filter_key(self.id)


NOT_FOUND = "There is no saved filter '{name}'; choose one from the list."
NOT_FOUND_ZH = "没有名为“{name}”的已保存筛选，请从列表中选择。"


class SavedFilterService:
    def __init__(self, engine: Engine, store: MetadataStore, policy: Policy, queries: QueryService):
        self.engine = engine
        self.store = store
        self.policy = policy
        self.queries = queries

    # --- reading ------------------------------------------------------------------------------
    def visible(self, actor: Actor, entity_key: str) -> list[UserFilter]:
        """The actor's own filters, then those shared with a role the actor holds now, each by name."""
        entity = self.store.catalog().entity(entity_key)
        self.policy.check(actor, entity, "read")
        if actor.id is None:
            return []
        t, r = pt.saved_filter, pt.saved_filter_role
        mine = t.c.owner_id == actor.id
        shared = t.c.id.in_(select(r.c.filter_id).where(r.c.role_id.in_(sorted(actor.role_ids)))) if actor.role_ids else None
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.entity == entity.key, or_(mine, shared) if shared is not None else mine)
                                .order_by(t.c.name, t.c.id)).mappings().all()
            roles = self._roles(conn, [row["id"] for row in rows])
        out = [_filter(row, roles.get(row["id"], ())) for row in rows]
        return [f for f in out if f.owner_id == actor.id] + [f for f in out if f.owner_id != actor.id]

    def find(self, actor: Actor, entity_key: str, key: str) -> UserFilter:
        """The filter ``key`` ("sf-12") if the actor may use it; otherwise the same BadQuery as an unknown name."""
        filter_id = parse_key(key)
        found = next((f for f in self.visible(actor, entity_key) if f.id == filter_id), None)
        if found is None:
            raise BadQuery(text(NOT_FOUND, NOT_FOUND_ZH, name=key))
        return found

    def own(self, actor: Actor, entity_key: str, filter_id: Any) -> UserFilter:
        """One of the actor's own filters (only the owner renames, re-shares or deletes one)."""
        fid = filter_id if isinstance(filter_id, int) else parse_key(str(filter_id)) or _int(filter_id)
        found = next((f for f in self.visible(actor, entity_key) if f.id == fid and f.owner_id == actor.id), None)
        if found is None:
            raise RecordNotFound(text("You have no saved filter #{id} here.", "你在这里没有编号为 {id} 的已保存筛选。", id=filter_id))
        return found

    # --- writing ------------------------------------------------------------------------------
    def create(self, actor: Actor, entity_key: str, *, name: str, filter: Any, sort: str | None = None,
               role_ids: Iterable[Any] = ()) -> UserFilter:
        entity = self.store.catalog().entity(entity_key)
        self.policy.check(actor, entity, "read")
        if actor.id is None:
            raise PermissionDenied(text("Only a signed-in user can save filters.", "只有登录用户才能保存筛选。"))
        name = _name(name)
        sort = _sort(sort)
        _nonempty(filter)
        self.queries.check_filter(entity.key, actor, filter=filter, sort=sort)
        roles = self._shareable(actor, entity, role_ids, ())
        now = dt.datetime.now(dt.timezone.utc)
        t = pt.saved_filter
        try:
            with write_transaction(self.engine) as conn:
                n = len(conn.execute(select(t.c.id).where(t.c.owner_id == actor.id, t.c.entity == entity.key)).all())
                if n >= MAX_PER_USER:
                    raise ValidationFailed({"name": [text("You can keep at most {n} saved filters here; delete one first.",
                                                          "这里最多保存 {n} 个筛选，请先删除一些。", n=MAX_PER_USER)]})
                self._name_free(conn, actor, entity.key, name, None)
                fid: int = conn.execute(t.insert().values(entity=entity.key, owner_id=actor.id, name=name, filter=filter, sort=sort,
                                                     created_at=now, updated_at=now).returning(t.c.id)).scalar_one()
                if roles:
                    conn.execute(pt.saved_filter_role.insert(), [{"filter_id": fid, "role_id": r} for r in roles])
                record_event(conn, category="builder", action="saved_filter_create", actor_id=actor.id, entity=entity.key,
                             subject=filter_key(fid), changes={"name": name, "filter": filter, "sort": sort, "role_ids": list(roles)})
        except IntegrityError:  # a concurrent save took the name between the check and the insert
            raise ValidationFailed({"name": [_TAKEN(name)]}) from None
        assert actor.id is not None  # a signed-in user saves filters
        return UserFilter(fid, entity.key, actor.id, name, filter, sort, tuple(roles), now)

    def update(self, actor: Actor, entity_key: str, filter_id: Any, *, name: str, role_ids: Iterable[Any]) -> UserFilter:
        """Rename and/or change who it is shared with (adding roles needs the sharing right; making it private does not)."""
        entity = self.store.catalog().entity(entity_key)
        current = self.own(actor, entity.key, filter_id)
        name = _name(name)
        roles = self._shareable(actor, entity, role_ids, current.role_ids)
        now = dt.datetime.now(dt.timezone.utc)
        t, r = pt.saved_filter, pt.saved_filter_role
        try:
            with write_transaction(self.engine) as conn:
                self._name_free(conn, actor, entity.key, name, current.id)
                conn.execute(t.update().where(t.c.id == current.id, t.c.owner_id == actor.id).values(name=name, updated_at=now))
                if set(roles) != set(current.role_ids):
                    conn.execute(delete(r).where(r.c.filter_id == current.id))
                    if roles:
                        conn.execute(r.insert(), [{"filter_id": current.id, "role_id": x} for x in roles])
                record_event(conn, category="builder", action="saved_filter_update", actor_id=actor.id, entity=entity.key,
                             subject=current.key, changes={"name": [current.name, name], "role_ids": [list(current.role_ids), list(roles)]})
        except IntegrityError:
            raise ValidationFailed({"name": [_TAKEN(name)]}) from None
        return UserFilter(current.id, entity.key, current.owner_id, name, current.filter, current.sort, tuple(roles), now)

    def delete(self, actor: Actor, entity_key: str, filter_id: Any) -> None:
        current = self.own(actor, entity_key, filter_id)
        with write_transaction(self.engine) as conn:
            conn.execute(delete(pt.saved_filter_role).where(pt.saved_filter_role.c.filter_id == current.id))
            conn.execute(delete(pt.saved_filter).where(pt.saved_filter.c.id == current.id, pt.saved_filter.c.owner_id == actor.id))
            record_event(conn, category="builder", action="saved_filter_delete", actor_id=actor.id, entity=current.entity,
                         subject=current.key, changes={"name": current.name})

    def roles(self) -> list[tuple[int, str]]:
        """Every role (id, name), for choosing whom to share with."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(ab_role.c.id, ab_role.c.name).order_by(ab_role.c.name)).tuples()
            return [(int(i), str(n)) for i, n in rows]

    # --- helpers ------------------------------------------------------------------------------
    def _shareable(self, actor: Actor, entity, role_ids: Iterable[Any], before: tuple[int, ...]) -> tuple[int, ...]:
        ids = []
        for raw in role_ids or ():
            rid = _int(raw)
            if rid is None:
                raise ValidationFailed({"role_ids": [text("'{v}' is not a role.", "“{v}”不是角色。", v=raw)]})
            if rid not in ids:
                ids.append(rid)
        if len(ids) > MAX_ROLES:
            raise ValidationFailed({"role_ids": [text("Share with at most {n} roles.", "最多共享给 {n} 个角色。", n=MAX_ROLES)]})
        if set(ids) - set(before) and not self.policy.may_share_filters(actor, entity):
            raise PermissionDenied(text(
                "Only people with the builder permission on {entity} (or administrators) may share filters with roles; save it as private.",
                "只有拥有{entity}设计权限的用户（或管理员）才能把筛选共享给角色；请保存为仅自己可见。", entity=entity.label))
        if ids:
            with self.engine.connect() as conn:
                known: set[int] = set(conn.execute(select(ab_role.c.id).where(ab_role.c.id.in_(ids))).scalars())
            missing = [i for i in ids if i not in known]
            if missing:
                raise ValidationFailed({"role_ids": [text("There is no role with id {id}.", "没有编号为 {id} 的角色。", id=missing[0])]})
        return tuple(sorted(ids))

    @staticmethod
    def _name_free(conn, actor: Actor, entity_key: str, name: str, except_id: int | None) -> None:
        t = pt.saved_filter
        q = select(t.c.id).where(t.c.owner_id == actor.id, t.c.entity == entity_key, t.c.name == name)
        if except_id is not None:
            q = q.where(t.c.id != except_id)
        if conn.execute(q).first() is not None:
            raise ValidationFailed({"name": [_TAKEN(name)]})

    @staticmethod
    def _roles(conn, ids: list[int]) -> dict[int, tuple[int, ...]]:
        if not ids:
            return {}
        r = pt.saved_filter_role
        out: dict[int, list[int]] = {}
        for fid, rid in conn.execute(select(r.c.filter_id, r.c.role_id).where(r.c.filter_id.in_(ids)).order_by(r.c.role_id)):
            out.setdefault(fid, []).append(rid)
        return {k: tuple(v) for k, v in out.items()}


def _filter(row, roles: tuple[int, ...]) -> UserFilter:
    return UserFilter(row["id"], row["entity"], row["owner_id"], row["name"], row["filter"], row["sort"], roles, row["updated_at"])


def _TAKEN(name: str):
    return text("You already have a saved filter called '{name}' here; choose another name.",
                "你在这里已有名为“{name}”的筛选，请换一个名称。", name=name)


def _int(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    s = str(raw).strip()
    return int(s) if s.isdigit() and len(s) <= 10 else None


def _name(raw: Any) -> str:
    name = " ".join(str(raw or "").split())
    if not name:
        raise ValidationFailed({"name": [text("Give the filter a name.", "请为筛选起个名称。")]})
    if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise ValidationFailed({"name": [text("A filter name is at most {n} characters of plain text.", "筛选名称最多 {n} 个字符，且不能含控制字符。", n=MAX_NAME)]})
    return name


def _sort(raw: Any) -> str | None:
    if raw in (None, ""):
        return None
    if not isinstance(raw, str) or len(raw) > 200:
        raise BadQuery(text("Sort by a field name, or -name for descending.", "请按字段名排序；降序时在字段名前加 -。"))
    return raw


def _nonempty(tree: Any) -> None:
    """A saved filter narrows the list: at least one condition (the query service checks the rest)."""
    def count(node) -> int:
        if isinstance(node, dict) and ("and" in node or "or" in node):
            parts = node.get("and", node.get("or"))
            return sum(count(n) for n in parts) if isinstance(parts, list) else 1
        return 1

    if not isinstance(tree, dict) or not tree or count(tree) == 0:
        raise BadQuery(text("Add at least one condition before saving the filter.", "请先添加至少一个筛选条件再保存。"))
