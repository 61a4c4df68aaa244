"""Per-entity drafts: the definitions a builder user is changing, kept apart from the live ones.

A draft holds the entity document, its forms and views, and the app manifest (for the menu), as
plain JSON. Every change names the revision it was made against; a change against an older revision
is refused with ``DraftConflict`` (compare-and-set on the row), so two people editing the same
entity never overwrite each other silently.
"""
from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from crmkit.runtime.audit import record_event
from crmkit.runtime.db import write_transaction
from crmkit.runtime.errors import CrmkitError
from crmkit.runtime.i18n_text import text
from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.services import Services
from crmkit.runtime.storage import platform_tables as pt


class DraftConflict(CrmkitError):
    code = "draft_conflict"
    status = 409
    default_message = text("Someone else changed this draft. Reload it and apply your change again.",
                           "其他人已修改了这份草稿。请重新加载，再应用你的修改。")


@dataclass
class Draft:
    entity_key: str
    app: str
    revision: int
    documents: dict  # {"entity": body, "forms": {name: body}, "views": {name: body}, "app": body}
    base_stamp: int
    updated_at: dt.datetime | None = None
    updated_by: int | None = None
    stored: bool = True  # False: a fresh copy of the live definitions, not saved yet

    @property
    def entity(self) -> dict:
        return self.documents["entity"]

    def raw_documents(self) -> list[RawDocument]:
        """The draft as documents the metadata store understands (sources point into the draft)."""
        d = self.documents
        out = [RawDocument("app", self.app, d["app"], f"draft:{self.app}/app.json"),
               RawDocument("entity", self.app, d["entity"], f"draft:{self.entity_key}/entity")]
        out += [RawDocument("form", self.app, body, f"draft:{self.entity_key}/forms/{name}") for name, body in sorted(d.get("forms", {}).items())]
        out += [RawDocument("view", self.app, body, f"draft:{self.entity_key}/views/{name}") for name, body in sorted(d.get("views", {}).items())]
        return out


def live_documents(services: Services, entity_key: str) -> dict | None:
    """The published documents of one entity (None when it is not defined)."""
    with services.engine.connect() as conn:
        rows = conn.execute(select(pt.document.c.kind, pt.document.c.key, pt.document.c.body, pt.document.c.app)).all()
    entity = next((r for r in rows if r.kind == "entity" and r.key == entity_key), None)
    if entity is None:
        return None
    app = next(r.body for r in rows if r.kind == "app" and r.key == entity.app)
    forms = {r.body["name"]: r.body for r in rows if r.kind == "form" and r.body.get("entity") == entity_key}
    views = {r.body["name"]: r.body for r in rows if r.kind == "view" and r.body.get("entity") == entity_key}
    return copy.deepcopy({"entity": entity.body, "forms": forms, "views": views, "app": app})


class DraftStore:
    def __init__(self, services: Services):
        self.services = services

    def get(self, entity_key: str) -> Draft | None:
        with self.services.engine.connect() as conn:
            row = conn.execute(select(pt.builder_draft).where(pt.builder_draft.c.entity_key == entity_key)).first()
        return _draft(row) if row else None

    def open(self, entity_key: str) -> Draft:
        """The stored draft, or a fresh (unsaved, revision 0) copy of the live definitions."""
        found = self.get(entity_key)
        if found is not None:
            return found
        docs = live_documents(self.services, entity_key)
        if docs is None:
            from crmkit.runtime.errors import RecordNotFound

            raise RecordNotFound(text("There is no entity '{key}'.", "实体“{key}”不存在。", key=entity_key))
        return Draft(entity_key, entity_key.split(".")[0], 0, docs, self.services.store.stamp(), stored=False)

    def all(self) -> list[Draft]:
        with self.services.engine.connect() as conn:
            return [_draft(r) for r in conn.execute(select(pt.builder_draft).order_by(pt.builder_draft.c.entity_key))]

    def change(self, entity_key: str, revision: int, edit: Callable[[dict], Any], *, actor_id: int | None, action: str,
               details: dict | None = None, fresh: dict | None = None) -> Draft:
        """Apply ``edit`` to a copy of the draft's documents if ``revision`` is still current; audited.

        ``fresh`` gives the documents of a draft that does not exist yet (a new entity); otherwise a
        missing draft starts from the live definitions at revision 0.
        """
        now = dt.datetime.now(dt.timezone.utc)
        with write_transaction(self.services.engine) as conn:
            row = conn.execute(select(pt.builder_draft).where(pt.builder_draft.c.entity_key == entity_key)).first()
            if row is None:
                if revision != 0:
                    raise _conflict(None)
                docs = copy.deepcopy(fresh) if fresh is not None else live_documents(self.services, entity_key)
                if docs is None:
                    from crmkit.runtime.errors import RecordNotFound

                    raise RecordNotFound(text("There is no entity '{key}'.", "实体“{key}”不存在。", key=entity_key))
                edit(docs)
                try:
                    conn.execute(pt.builder_draft.insert().values(
                        entity_key=entity_key, app=entity_key.split(".")[0], revision=1, documents=docs,
                        base_stamp=self.services.store.stamp(conn), created_at=now, created_by=actor_id, updated_at=now, updated_by=actor_id))
                except IntegrityError:  # someone else started the draft at the same moment
                    raise _conflict(None) from None
                new_revision = 1
            else:
                if row.revision != revision:
                    raise _conflict(row, conn)
                docs = copy.deepcopy(row.documents)
                edit(docs)
                new_revision = revision + 1
                done = conn.execute(pt.builder_draft.update()
                                    .where(pt.builder_draft.c.id == row.id, pt.builder_draft.c.revision == revision)
                                    .values(documents=docs, revision=new_revision, updated_at=now, updated_by=actor_id))
                if done.rowcount != 1:  # someone else's change committed between our read and write
                    raise _conflict(None)
            audit(conn, action, actor_id, entity_key, {"revision": new_revision, **(details or {})})
        return self.get(entity_key)

    def discard(self, entity_key: str, revision: int, *, actor_id: int | None) -> None:
        with write_transaction(self.services.engine) as conn:
            row = conn.execute(select(pt.builder_draft).where(pt.builder_draft.c.entity_key == entity_key)).first()
            if row is None:
                return
            if row.revision != revision:
                raise _conflict(row, conn)
            conn.execute(pt.builder_draft.delete().where(pt.builder_draft.c.id == row.id))
            audit(conn, "discard", actor_id, entity_key, {"revision": revision})

    def delete_in(self, conn: Connection, entity_key: str, revision: int) -> None:
        """Remove the draft inside a publish transaction, if it is still at ``revision``."""
        row = conn.execute(select(pt.builder_draft).where(pt.builder_draft.c.entity_key == entity_key)).first()
        if row is None:
            return
        if row.revision != revision:
            raise _conflict(row, conn)
        conn.execute(pt.builder_draft.delete().where(pt.builder_draft.c.id == row.id))


def audit(conn: Connection, action: str, actor_id: int | None, entity_key: str, details: dict) -> None:
    record_event(conn, category="builder", action=action[:32], actor_id=actor_id, entity=entity_key,
                 subject=f"builder:{entity_key}", changes=details)


def _conflict(row, conn: Connection | None = None) -> DraftConflict:
    if row is None:
        return DraftConflict()
    who = f"user #{row.updated_by}" if row.updated_by else "someone"
    if row.updated_by and conn is not None:
        from crmkit.runtime.storage.fab_tables import ab_user

        who = conn.execute(select(ab_user.c.username).where(ab_user.c.id == row.updated_by)).scalar() or who
    when = row.updated_at.strftime("%Y-%m-%d %H:%M UTC") if row.updated_at else ""
    return DraftConflict(text(
        "{who} changed this draft at {when} (now revision {rev}). Reload it and apply your change again; nothing was overwritten.",
        "{who} 已于 {when} 修改了这份草稿（当前修订号 {rev}）。请重新加载后再修改；没有任何内容被覆盖。",
        who=who, when=when, rev=row.revision), details={"revision": row.revision})


def _draft(row) -> Draft:
    return Draft(row.entity_key, row.app, row.revision, copy.deepcopy(row.documents), row.base_stamp, row.updated_at, row.updated_by)
