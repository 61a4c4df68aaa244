"""BuilderService: drafts → validate → schema plan → confirmed publish, versions and restore.

Publishing runs the same steps as installing an app: the whole would-be catalog is validated with
the meta-schemas (problems come back by file and JSON pointer), the schema plan is computed against
the live database, lossy or destructive steps are refused unless confirmed with their row count,
then the documents are saved as new versions (author, time, diff) and the plan is applied. The
stamp moves, so every worker recompiles on its next request.
"""
from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import MetaData, Table, func, select

from crmkit.runtime.actor import Actor
from crmkit.runtime.audit import record_event_now
from crmkit.runtime.errors import DefinitionError, PermissionDenied, PlanRefused, RecordNotFound
from crmkit.runtime.i18n_text import text
from crmkit.runtime.meta.catalog import Catalog
from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.meta.loader import document_key
from crmkit.runtime.services import Services
from crmkit.runtime.storage import fab_tables
from crmkit.runtime.storage import platform_tables as pt
from crmkit.runtime.storage.entity_tables import build_tables
from crmkit.runtime.storage.plan import Plan, Planner, lossy_rows_predicate, refuse_unsafe, type_sig
from crmkit.runtime.storage.publish import publish_documents

from . import edits
from .diff import readable_diff
from .drafts import Draft, DraftStore, live_documents

FAILING_IDS_SHOWN = 20


@dataclass
class DocumentChange:
    kind: str
    key: str
    diff: list[dict]  # [{path, old, new}]
    created: bool = False


@dataclass
class PublishPreview:
    """What publishing the draft would do; ``problems`` non-empty means it cannot be published."""

    draft: Draft
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (document, pointer, message)
    plan: Plan | None = None
    changes: list[DocumentChange] = field(default_factory=list)
    failing_ids: dict[str, list[int]] = field(default_factory=dict)  # "table.column" → ids whose values will not convert
    catalog: Catalog | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def risky_rows(self) -> int:
        """Rows affected by destructive or lossy steps: the number a second confirmation must repeat."""
        return sum(s.affected_rows or 0 for s in self.plan.needs_confirmation) if self.plan else 0

    @property
    def needs_confirmation(self) -> bool:
        return bool(self.plan and self.plan.needs_confirmation)


class BuilderService:
    def __init__(self, services: Services):
        self.services = services
        self.drafts = DraftStore(services)

    # --- access --------------------------------------------------------------------------------
    def can_build(self, actor: Actor, entity_key: str | None = None) -> bool:
        """The builder permission on the entity (or, for the builder's home, on any entity)."""
        catalog = self.services.store.catalog()
        if entity_key is not None and entity_key in catalog.entities:
            return self.services.policy.allows(actor, catalog.entities[entity_key], "builder")
        if entity_key is not None:  # a new entity: builder on any entity of its app
            app = entity_key.split(".")[0]
            return actor.is_admin or any(self.services.policy.allows(actor, e, "builder") for e in catalog.entities.values() if e.app == app)
        return actor.is_admin or any(self.services.policy.allows(actor, e, "builder") for e in catalog.entities.values())

    def require(self, actor: Actor, entity_key: str | None = None) -> None:
        if not self.can_build(actor, entity_key):
            raise PermissionDenied(text("You may not use the builder here. Ask an administrator for the 'builder' permission.",
                                        "你没有使用设计器的权限。请联系管理员为你的角色开通“builder”权限。"))

    def entities(self, actor: Actor) -> list:
        catalog = self.services.store.catalog()
        drafts = {d.entity_key: d for d in self.drafts.all()}
        out = [(e, drafts.pop(e.key, None)) for e in catalog.entities.values()
               if not e.is_child and self.services.policy.allows(actor, e, "builder")]
        out += [(None, d) for d in drafts.values() if self.can_build(actor, d.entity_key)]  # new entities not yet published
        return out

    # --- drafts ----------------------------------------------------------------------------------
    def open(self, actor: Actor, entity_key: str) -> Draft:
        self.require(actor, entity_key)
        return self.drafts.open(entity_key)

    def edit(self, actor: Actor, entity_key: str, revision: int, action: str, change: Callable[[dict], Any], **details) -> Draft:
        """Apply one designer action to the draft (conflict-checked and audited)."""
        self.require(actor, entity_key)
        return self.drafts.change(entity_key, revision, change, actor_id=actor.id, action=action, details=details)

    def create_entity(self, actor: Actor, app_id: str, name: str, zh: str, en: str, *, icon: str = "table", menu: str = "end",
                      title_zh: str = "名称", title_en: str = "Name") -> Draft:
        catalog = self.services.store.catalog()
        if app_id not in catalog.apps:
            raise RecordNotFound(text("There is no app '{app}'.", "应用“{app}”不存在。", app=app_id))
        key = f"{app_id}.{edits.check_name(name)}"
        self.require(actor, key)
        if key in catalog.entities or self.drafts.get(key) is not None:
            from crmkit.runtime.errors import ValidationFailed

            raise ValidationFailed({"name": [text("An entity '{key}' already exists.", "实体“{key}”已存在。", key=key)]})
        app_doc = live_documents_app(self.services, app_id)
        fresh = edits.new_entity_documents(app_doc, name, zh, en, icon=icon, menu=menu, title_zh=title_zh, title_en=title_en)
        return self.drafts.change(key, 0, lambda docs: None, actor_id=actor.id, action="create_entity", fresh=fresh,
                                  details={"app": app_id, "name": name})

    def discard(self, actor: Actor, entity_key: str, revision: int) -> None:
        self.require(actor, entity_key)
        self.drafts.discard(entity_key, revision, actor_id=actor.id)

    # --- preview & publish ---------------------------------------------------------------------
    def documents_to_publish(self, draft: Draft) -> list[RawDocument]:
        """The draft's documents, with form sections left empty while designing dropped."""
        out = []
        for d in draft.raw_documents():
            if d.kind == "app":
                d = RawDocument("app", d.app, self._app_with_menu(draft), d.source)
            if d.kind == "form":
                body = copy.deepcopy(d.body)
                body["sections"] = [s for s in body["sections"] if s["fields"]]
                if not body["sections"]:
                    continue
                d = RawDocument(d.kind, d.app, body, d.source)
            out.append(d)
        return out

    def _app_with_menu(self, draft: Draft) -> dict:
        """The live app manifest with only this entity's menu entry taken from the draft, so drafts of
        other entities of the same app (each holding a copy of the manifest) never undo each other."""
        try:
            app = live_documents_app(self.services, draft.app)
        except RecordNotFound:
            return draft.documents["app"]
        wanted = [m for m in draft.documents["app"].get("menu", [])]
        position = next((i for i, m in enumerate(wanted) if m["entity"] == draft.entity_key), None)
        menu = [m for m in app.get("menu", []) if m["entity"] != draft.entity_key]
        if position is not None:
            menu.insert(min(position, len(menu)), wanted[position])
        if menu or "menu" in app:
            app["menu"] = menu
        return app

    def preview(self, actor: Actor, entity_key: str) -> PublishPreview:
        draft = self.open(actor, entity_key)
        return self._preview(draft)

    def _preview(self, draft: Draft) -> PublishPreview:
        docs = self.documents_to_publish(draft)
        result = PublishPreview(draft=draft, changes=self._changes(docs))
        try:
            catalog = self.services.store.preview(docs)
        except DefinitionError as exc:
            result.problems = exc.problems
            return result
        result.catalog = catalog
        result.plan = Planner(self.services.engine, catalog).plan()
        result.failing_ids = self._failing_ids(catalog)
        return result

    def publish(self, actor: Actor, entity_key: str, revision: int, *, confirm: bool = False, confirmed_rows: int | None = None,
                comment: str = "") -> PublishPreview:
        """Publish the draft at ``revision``. Lossy/destructive steps need ``confirm`` and the affected
        row count repeated in ``confirmed_rows`` (so a plan that changed since it was shown is refused)."""
        draft = self.open(actor, entity_key)
        if not draft.stored or draft.revision != revision:
            raise self._stale(draft)
        result = self._preview(draft)
        if result.problems:
            raise DefinitionError(result.problems)
        self._check_confirmation(result, confirm, confirmed_rows)
        docs = self.documents_to_publish(draft)
        self._save_and_apply(actor, docs, confirm=True if result.needs_confirmation else False,
                             comment=comment or f"builder: publish {entity_key}", plan=result.plan)
        from crmkit.runtime.db import write_transaction

        with write_transaction(self.services.engine) as conn:
            self.drafts.delete_in(conn, entity_key, revision)
            from .drafts import audit

            audit(conn, "publish", actor.id, entity_key, {"revision": revision, "steps": [s.description for s in result.plan.steps][:100],
                                                          "confirmed_rows": result.risky_rows if result.needs_confirmation else 0,
                                                          "documents": [f"{c.kind}:{c.key}" for c in result.changes]})
        return result

    def _check_confirmation(self, result: PublishPreview, confirm: bool, confirmed_rows: int | None) -> None:
        refuse_unsafe(result.plan, confirm=confirm)  # blocked steps, or unconfirmed lossy ones
        if result.needs_confirmation and confirmed_rows != result.risky_rows:
            raise PlanRefused(text(
                "This publish deletes or converts data in {rows} rows; confirm by entering that number.",
                "此次发布会删除或转换 {rows} 行数据；请输入该数字以确认。", rows=result.risky_rows),
                details={"steps": [s.to_dict() for s in result.plan.needs_confirmation], "affected_rows": result.risky_rows})

    def _save_and_apply(self, actor: Actor, docs: list[RawDocument], *, confirm: bool, comment: str, plan: Plan | None = None) -> None:
        """Apply the plan the preview showed (the one the confirmation was checked against), not a second one."""
        publish_documents(self.services.store, self.services.engine, docs, confirm=confirm, actor_id=actor.id, comment=comment[:500],
                          plan=plan)

    def _stale(self, draft: Draft):
        from .drafts import DraftConflict

        if not draft.stored:
            return DraftConflict(text("There is no draft to publish (it was published or discarded). Reload the page.",
                                      "没有可发布的草稿（已被发布或丢弃）。请刷新页面。"))
        return DraftConflict(text("The draft changed since you looked at it (now revision {rev}). Review it again before publishing.",
                                  "草稿在你查看后被修改了（当前修订号 {rev}）。请重新检查后再发布。", rev=draft.revision),
                             details={"revision": draft.revision})

    def _changes(self, docs: list[RawDocument]) -> list[DocumentChange]:
        with self.services.engine.connect() as conn:
            live = {(r.kind, r.key): r.body for r in conn.execute(select(pt.document.c.kind, pt.document.c.key, pt.document.c.body))}
        out = []
        for d in docs:
            key = document_key(d)
            old = live.get((d.kind, key))
            if old is None:
                out.append(DocumentChange(d.kind, key, [{"path": "/", "op": "added", "old": None, "new": d.body}], created=True))
            elif old != d.body:
                out.append(DocumentChange(d.kind, key, readable_diff(old, d.body)))
        return out

    def _failing_ids(self, catalog: Catalog) -> dict[str, list[int]]:
        """For each column whose type changes, the ids of rows whose values will not convert."""
        _, tables = build_tables(catalog)
        out: dict[str, list[int]] = {}
        engine = self.services.engine
        with engine.connect() as conn:
            applied = {(r.entity_id, r.field_id): r for r in conn.execute(select(pt.applied_field))}
            live_tables = set(_table_names(conn))
            for key, table in tables.items():
                entity = catalog.entities[key]
                if table.name not in live_tables:
                    continue
                live = None
                for f in entity.fields:
                    col = table.c.get(f.name)
                    prev = applied.get((entity.id, f.id))
                    if col is None or prev is None:
                        continue
                    new_sig = type_sig(col.type, engine.dialect)
                    if prev.type_sig == new_sig:
                        continue
                    live = live if live is not None else Table(table.name, MetaData(), autoload_with=conn)
                    if prev.column_name not in live.c:
                        continue
                    c = live.c[prev.column_name]
                    pred = lossy_rows_predicate(c, prev.type_sig, new_sig, engine.dialect.name)
                    if pred is None:
                        continue
                    q = select(live.c.id).where(c.is_not(None)).order_by(live.c.id).limit(FAILING_IDS_SHOWN)
                    if pred is not False:
                        q = q.where(pred)
                    ids = list(conn.execute(q).scalars())
                    if ids:
                        out[f"{table.name}.{f.name}"] = ids
        return out

    # --- versions ----------------------------------------------------------------------------
    def versions(self, actor: Actor, entity_key: str) -> list[dict]:
        """Every published version of the entity's documents, newest first, with author and diff."""
        self.require(actor, entity_key)
        with self.services.engine.connect() as conn:
            docs = conn.execute(select(pt.document.c.id, pt.document.c.kind, pt.document.c.key, pt.document.c.body)).all()
            mine = {d.id: (d.kind, d.key) for d in docs
                    if (d.kind == "entity" and d.key == entity_key) or (d.kind in ("form", "view") and d.body.get("entity") == entity_key)}
            if not mine:
                return []
            rows = conn.execute(select(pt.document_version, fab_tables.ab_user.c.username)
                                .select_from(pt.document_version.outerjoin(fab_tables.ab_user, fab_tables.ab_user.c.id == pt.document_version.c.changed_by))
                                .where(pt.document_version.c.document_id.in_(list(mine)))
                                .order_by(pt.document_version.c.changed_at.desc(), pt.document_version.c.id.desc())).all()
        return [{"id": r.id, "kind": mine[r.document_id][0], "key": mine[r.document_id][1], "version": r.version,
                 "changed_at": r.changed_at, "changed_by": r.changed_by, "username": r.username, "comment": r.comment or "",
                 "diff": r.diff} for r in rows]

    def restore(self, actor: Actor, entity_key: str, version_id: int, *, confirm: bool = False,
                confirmed_rows: int | None = None, dry_run: bool = False) -> PublishPreview:
        """Publish an old version of one document again (a new version); it runs its own plan."""
        self.require(actor, entity_key)
        with self.services.engine.connect() as conn:
            row = conn.execute(select(pt.document_version.c.body, pt.document_version.c.version, pt.document.c.kind, pt.document.c.app,
                                      pt.document.c.key)
                               .select_from(pt.document_version.join(pt.document, pt.document.c.id == pt.document_version.c.document_id))
                               .where(pt.document_version.c.id == version_id)).first()
        if row is None or not (row.key == entity_key or (isinstance(row.body, dict) and row.body.get("entity") == entity_key)):
            raise RecordNotFound(text("There is no such version of {key}.", "{key} 没有这个版本。", key=entity_key))
        docs = live_documents(self.services, entity_key)
        # The entity's documents as they stood when this version was saved (a form or view that
        # names a field must go back together with the entity, or the result would not validate).
        for kind, _key, body in self._documents_at(entity_key, version_id):
            if kind == "entity":
                docs["entity"] = body
            else:
                docs[kind + "s"][body["name"]] = body
        draft = Draft(entity_key, row.app, 0, docs, self.services.store.stamp(), stored=False)
        result = self._preview(draft)
        if dry_run:
            return result
        if result.problems:
            raise DefinitionError(result.problems)
        self._check_confirmation(result, confirm, confirmed_rows)
        self._save_and_apply(actor, self.documents_to_publish(draft), confirm=result.needs_confirmation,
                             comment=f"builder: restore {row.kind}:{row.key} version {row.version}", plan=result.plan)
        record_event_now(self.services.engine, category="builder", action="restore", actor_id=actor.id, entity=entity_key,
                         subject=f"builder:{entity_key}", changes={"document": f"{row.kind}:{row.key}", "version": row.version,
                                                                   "steps": [s.description for s in result.plan.steps][:100]})
        return result

    def _documents_at(self, entity_key: str, version_id: int) -> list[tuple[str, str, dict]]:
        with self.services.engine.connect() as conn:
            docs = conn.execute(select(pt.document.c.id, pt.document.c.kind, pt.document.c.key, pt.document.c.body)).all()
            mine = {d.id: (d.kind, d.key) for d in docs
                    if (d.kind == "entity" and d.key == entity_key) or (d.kind in ("form", "view") and d.body.get("entity") == entity_key)}
            at = conn.execute(select(pt.document_version.c.changed_at).where(pt.document_version.c.id == version_id)).scalar()
            out = []
            for doc_id, (kind, key) in mine.items():
                # One save stamps all its documents with the same time, so "at or before" picks that save's set.
                body = conn.execute(select(pt.document_version.c.body).where(pt.document_version.c.document_id == doc_id,
                                                                             pt.document_version.c.changed_at <= at)
                                    .order_by(pt.document_version.c.changed_at.desc(), pt.document_version.c.id.desc()).limit(1)).scalar()
                if body is not None:
                    out.append((kind, key, copy.deepcopy(body)))
        return out

    def row_count(self, entity_key: str) -> int:
        """Live rows of a published entity (for the delete-field confirmation)."""
        catalog = self.services.store.catalog()
        entity = catalog.entities.get(entity_key)
        if entity is None:
            return 0
        with self.services.engine.connect() as conn:
            if entity.table_name not in _table_names(conn):
                return 0
            t = Table(entity.table_name, MetaData(), autoload_with=conn)
            return conn.execute(select(func.count()).select_from(t)).scalar_one()

    def field_value_count(self, entity_key: str, field_name: str) -> int:
        """Rows holding a value in the field's live column: what deleting the field's data would lose."""
        catalog = self.services.store.catalog()
        entity = catalog.entities.get(entity_key)
        if entity is None or not entity.has_field(field_name):
            return 0
        f = entity.field(field_name)
        with self.services.engine.connect() as conn:
            applied = conn.execute(select(pt.applied_field.c.column_name).where(pt.applied_field.c.entity_id == entity.id,
                                                                                   pt.applied_field.c.field_id == f.id)).scalar()
            if applied is None or entity.table_name not in _table_names(conn):
                return 0
            t = Table(entity.table_name, MetaData(), autoload_with=conn)
            if applied not in t.c:
                return 0
            return conn.execute(select(func.count()).select_from(t).where(t.c[applied].is_not(None))).scalar_one()


def live_documents_app(services: Services, app_id: str) -> dict:
    with services.engine.connect() as conn:
        body = conn.execute(select(pt.document.c.body).where(pt.document.c.kind == "app", pt.document.c.key == app_id)).scalar()
    if body is None:
        raise RecordNotFound(text("There is no app '{app}'.", "应用“{app}”不存在。", app=app_id))
    return copy.deepcopy(body)


def _table_names(conn) -> list[str]:
    from sqlalchemy import inspect

    return inspect(conn).get_table_names()


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
