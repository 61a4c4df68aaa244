"""Installed definitions live in the database as versioned JSON documents.

Every save bumps one stamp row. Each process keeps the compiled catalog of the
stamp it last saw and recompiles when the stamp moves, so a change published in
one worker reaches every other worker on its next request.
"""
from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from typing import Any, Callable, Iterable

from sqlalchemy import Connection, Engine, select

from ..audit import record_event
from ..db import inserted_id, write_transaction
from ..fields import FieldTypeRegistry
from ..storage import platform_tables as pt
from .catalog import Catalog
from .compile import RawDocument, compile_documents
from .loader import document_key
from .validate import DefinitionValidator, document_digest

KIND_ORDER = {"app": 0, "entity": 1, "form": 2, "view": 3, "workflow": 4, "report": 5, "dashboard": 6, "automation": 7}


def json_diff(old: Any, new: Any, path: str = "") -> list[dict]:
    """A list of {path, old, new} changes between two JSON values (lists compared by position)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += json_diff(old.get(k), new.get(k), f"{path}/{k}")
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            out += json_diff(a, b, f"{path}/{i}")
        return out
    return [] if old == new else [{"path": path or "/", "old": old, "new": new}]


REQUEST_KEY = "crmkit_catalog"
COMPILED_KEPT = 4  # a publish compiles one document set and checks it again before planning and saving


class MetadataStore:
    def __init__(self, engine: Engine, field_types: FieldTypeRegistry, *, request_scope: Callable[[], Any] | None = None):
        """``request_scope`` returns a per-request object (Flask's ``g``) or None: inside a request the catalog is
        pinned once, so a request sees one consistent version and checks the stamp at most once."""
        self.engine = engine
        self.field_types = field_types
        self.validator = DefinitionValidator(field_types)
        self.request_scope = request_scope
        self._lock = threading.Lock()
        self._cached: Catalog | None = None
        self._compiled_lock = threading.Lock()
        self._compiled: OrderedDict[tuple, Catalog] = OrderedDict()

    def _scope(self):
        return self.request_scope() if self.request_scope else None

    def prime(self, version: int | None) -> None:
        """Adopt a stamp read elsewhere in this request (with the actor's grants): no separate stamp query runs
        when this process already compiled that version."""
        scope, cached = self._scope(), self._cached
        if scope is not None and version is not None and cached is not None and cached.version == version:
            setattr(scope, REQUEST_KEY, cached)

    def forget_request(self) -> None:
        scope = self._scope()
        if scope is not None and hasattr(scope, REQUEST_KEY):
            delattr(scope, REQUEST_KEY)

    # --- reading -------------------------------------------------------------------
    def stamp(self, conn: Connection | None = None) -> int:
        if conn is None:
            with self.engine.connect() as c:
                return self.stamp(c)
        return conn.execute(select(pt.meta_stamp.c.version).where(pt.meta_stamp.c.id == 1)).scalar_one()

    def raw_documents(self, conn: Connection) -> list[RawDocument]:
        rows = list(conn.execute(select(pt.document.c.kind, pt.document.c.app, pt.document.c.key, pt.document.c.body)).all())
        rows.sort(key=lambda r: (KIND_ORDER[r.kind], r.key))
        return [RawDocument(r.kind, r.app, r.body, f"db:{r.kind}/{r.key}") for r in rows]

    def catalog(self) -> Catalog:
        """The compiled catalog for the current stamp (one cheap query when nothing changed; none when pinned)."""
        scope = self._scope()
        if scope is not None:
            pinned = getattr(scope, REQUEST_KEY, None)
            if pinned is not None:
                return pinned
            catalog = self._current()
            setattr(scope, REQUEST_KEY, catalog)
            return catalog
        return self._current()

    def _current(self) -> Catalog:
        with self.engine.connect() as conn:
            version = self.stamp(conn)
            cached = self._cached
            if cached is not None and cached.version == version:
                return cached
            with self._lock:
                if self._cached is not None and self._cached.version == version:
                    return self._cached
                docs = self.raw_documents(conn)
        catalog = self.compile(docs).with_version(version)
        self._cached = catalog
        return catalog

    def compile(self, docs: list[RawDocument]) -> Catalog:
        """``compile_documents`` for this store, remembering the last few results by the documents' content.

        Compiling is a function of the documents (kind, app, source, body) and the registered field types,
        so the same set compiled again — the preview, plan and save of one publish — is the same catalog.
        Any changed document changes the key and is compiled (and validated) afresh; failures are not kept."""
        try:
            key = (tuple(self.field_types.names()),
                   tuple((d.kind, d.app, d.source, document_digest(d.body) or object()) for d in docs))
        except TypeError:  # an unhashable source or app: just compile
            return compile_documents(docs, self.field_types, self.validator)
        with self._compiled_lock:
            found = self._compiled.get(key)
            if found is not None:
                self._compiled.move_to_end(key)
                return found
        catalog = compile_documents(docs, self.field_types, self.validator)
        with self._compiled_lock:
            self._compiled[key] = catalog
            while len(self._compiled) > COMPILED_KEPT:
                self._compiled.popitem(last=False)
        return catalog

    def preview(self, docs: Iterable[RawDocument]) -> Catalog:
        """The catalog as it would be with ``docs`` saved (replacing same-key documents)."""
        with self.engine.connect() as conn:
            current = {(d.kind, document_key(d)): d for d in self.raw_documents(conn)}
        for d in docs:
            current[(d.kind, document_key(d))] = d
        ordered = sorted(current.values(), key=lambda d: (KIND_ORDER[d.kind], document_key(d)))
        return self.compile(ordered)

    def history(self, kind: str, key: str) -> list[dict]:
        with self.engine.connect() as conn:
            doc_id = conn.execute(select(pt.document.c.id).where(pt.document.c.kind == kind, pt.document.c.key == key)).scalar()
            if doc_id is None:
                return []
            rows = conn.execute(select(pt.document_version).where(pt.document_version.c.document_id == doc_id).order_by(pt.document_version.c.version)).all()
            return [dict(r._mapping) for r in rows]

    # --- writing -------------------------------------------------------------------
    def save(self, docs: Iterable[RawDocument], *, actor_id: int | None = None, comment: str = "",
             within: Callable[[Connection], None] | None = None) -> int:
        """Store the documents; ``within(conn)`` runs in the same transaction before it commits (schema steps that
        must switch together with the definitions: see ``storage.publish``)."""
        try:
            return self._save(docs, actor_id=actor_id, comment=comment, within=within)
        finally:
            self.forget_request()  # the rest of this request sees what was just saved

    def _save(self, docs: Iterable[RawDocument], *, actor_id: int | None = None, comment: str = "",
              within: Callable[[Connection], None] | None = None) -> int:
        """Validate the whole resulting catalog, then store changed documents with history. Returns the new stamp."""
        docs = list(docs)
        self.preview(docs)  # raises DefinitionError before anything is written
        now = dt.datetime.now(dt.timezone.utc)
        with write_transaction(self.engine) as conn:
            changed = 0
            for d in docs:
                key = document_key(d)
                row = conn.execute(select(pt.document).where(pt.document.c.kind == d.kind, pt.document.c.key == key)).first()
                if row is not None and row.body == d.body:
                    continue
                diff = json_diff(row.body if row else None, d.body) if row else [{"path": "/", "old": None, "new": "created"}]
                if row is None:
                    doc_id = inserted_id(conn.execute(pt.document.insert().values(kind=d.kind, app=d.app, key=key, body=d.body, version=1, updated_at=now, updated_by=actor_id)))
                    version = 1
                else:
                    doc_id, version = row.id, row.version + 1
                    conn.execute(pt.document.update().where(pt.document.c.id == doc_id).values(body=d.body, version=version, updated_at=now, updated_by=actor_id))
                conn.execute(pt.document_version.insert().values(document_id=doc_id, version=version, body=d.body, diff=diff, changed_at=now, changed_by=actor_id, comment=comment[:500] or None))
                record_event(conn, category="publish", action="publish", actor_id=actor_id, subject=f"{d.kind}:{key}", at=now,
                             changes={"kind": d.kind, "key": key, "version": version, "comment": comment[:500], "paths": [c["path"] for c in diff][:200]})
                changed += 1
            if within is not None:
                within(conn)
            if changed:
                conn.execute(pt.meta_stamp.update().where(pt.meta_stamp.c.id == 1).values(version=pt.meta_stamp.c.version + 1))
            return self.stamp(conn)
