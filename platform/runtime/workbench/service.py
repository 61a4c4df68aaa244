"""Favourites, watches and role defaults: small rows in platform tables, one statement per question."""
from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

from sqlalchemy import Engine, delete, select

from ..audit import record_event
from ..db import write_transaction
from ..errors import BadQuery
from ..i18n_text import text
from ..storage import platform_tables as pt

FAVORITE_KINDS = ("entity", "report", "dashboard")
MAX_FAVORITES = 50
MAX_WATCHES = 500


class WorkbenchService:
    def __init__(self, engine: Engine):
        self.engine = engine

    # --- favourites -------------------------------------------------------------------------
    def favorites(self, user_id: int, role_ids=()) -> tuple[list[tuple[str, str]], bool]:
        """(kind, target) pairs in the order added, and whether they are the user's own (False: role defaults)."""
        with self.engine.connect() as conn:
            own = conn.execute(select(pt.favorite.c.kind, pt.favorite.c.target).where(pt.favorite.c.user_id == user_id)
                               .order_by(pt.favorite.c.id)).tuples().all()
            if own:
                return [(k, t) for k, t in own], True
            if not role_ids:
                return [], True
            rows: Sequence[Any] = conn.execute(select(pt.workbench_default.c.favorites).where(pt.workbench_default.c.role_id.in_(list(role_ids)))
                                .order_by(pt.workbench_default.c.role_id)).scalars().all()
        seen, out = set(), []
        for favs in rows:
            for f in favs or []:
                key = (f.get("kind"), f.get("target"))
                if key not in seen and key[0] in FAVORITE_KINDS:
                    seen.add(key)
                    out.append(key)
        return out, False

    def is_favorite(self, user_id: int, kind: str, target: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(pt.favorite.c.id).where(pt.favorite.c.user_id == user_id, pt.favorite.c.kind == kind,
                                                               pt.favorite.c.target == target)).first() is not None

    def toggle_favorite(self, user_id: int, kind: str, target: str) -> bool:
        """Star or unstar; returns the new state."""
        if kind not in FAVORITE_KINDS or not target or len(target) > 200:
            raise BadQuery(text("Unknown favourite.", "无法收藏此项。"))
        with write_transaction(self.engine) as conn:
            where = (pt.favorite.c.user_id == user_id, pt.favorite.c.kind == kind, pt.favorite.c.target == target)
            if conn.execute(delete(pt.favorite).where(*where)).rowcount:
                return False
            n = len(conn.execute(select(pt.favorite.c.id).where(pt.favorite.c.user_id == user_id)).all())
            if n >= MAX_FAVORITES:
                raise BadQuery(text("At most {n} favourites; remove one first.", "最多收藏 {n} 项，请先取消一些。", n=MAX_FAVORITES))
            conn.execute(pt.favorite.insert().values(user_id=user_id, kind=kind, target=target, created_at=dt.datetime.now(dt.timezone.utc)))
            return True

    # --- watched records ---------------------------------------------------------------------
    def is_watching(self, user_id: int, entity: str, record_id: int) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(pt.watch.c.id).where(pt.watch.c.user_id == user_id, pt.watch.c.entity == entity,
                                                            pt.watch.c.record_id == record_id)).first() is not None

    def toggle_watch(self, user_id: int, entity: str, record_id: int) -> bool:
        with write_transaction(self.engine) as conn:
            where = (pt.watch.c.user_id == user_id, pt.watch.c.entity == entity, pt.watch.c.record_id == record_id)
            if conn.execute(delete(pt.watch).where(*where)).rowcount:
                return False
            n = len(conn.execute(select(pt.watch.c.id).where(pt.watch.c.user_id == user_id)).all())
            if n >= MAX_WATCHES:
                raise BadQuery(text("At most {n} watched records; stop watching some first.", "最多关注 {n} 条记录，请先取消一些。", n=MAX_WATCHES))
            conn.execute(pt.watch.insert().values(user_id=user_id, entity=entity, record_id=record_id, created_at=dt.datetime.now(dt.timezone.utc)))
            return True

    def watched(self, user_id: int) -> dict[str, list[int]]:
        """Entity key → watched record ids, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(pt.watch.c.entity, pt.watch.c.record_id).where(pt.watch.c.user_id == user_id)
                                .order_by(pt.watch.c.id.desc())).tuples().all()
        out: dict[str, list[int]] = {}
        for e, rid in rows:
            out.setdefault(e, []).append(rid)
        return out

    # --- role defaults ------------------------------------------------------------------------
    def role_defaults(self) -> dict[int, list[dict]]:
        with self.engine.connect() as conn:
            return {r: list(f or []) for r, f in conn.execute(select(pt.workbench_default.c.role_id, pt.workbench_default.c.favorites)).tuples().all()}

    def set_role_default(self, role_id: int, favorites: list[tuple[str, str]], *, actor_id: int | None) -> None:
        items = [{"kind": k, "target": t} for k, t in favorites if k in FAVORITE_KINDS][:MAX_FAVORITES]
        now = dt.datetime.now(dt.timezone.utc)
        with write_transaction(self.engine) as conn:
            before = conn.execute(select(pt.workbench_default.c.favorites).where(pt.workbench_default.c.role_id == role_id)).scalar()
            conn.execute(delete(pt.workbench_default).where(pt.workbench_default.c.role_id == role_id))
            conn.execute(pt.workbench_default.insert().values(role_id=role_id, favorites=items, updated_at=now, updated_by=actor_id))
            record_event(conn, category="permission", action="workbench_default", actor_id=actor_id, subject=f"role:{role_id}", at=now,
                         changes={"role_id": role_id, "old": before, "new": items})
