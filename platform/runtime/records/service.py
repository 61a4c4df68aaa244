"""RecordService: the one write path for UI forms, the API, imports, bulk edits and app hooks.

Each call validates (marshmallow schema from the entity) → authorizes (policy point)
→ persists → writes audit entries → writes outbox events, in one transaction.
Bulk calls run the same per-record steps, so they produce the same audit and events.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from contextlib import contextmanager
from functools import partial
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy import Connection, Engine, Table, exists, func, or_, select
from sqlalchemy.exc import IntegrityError

from ..actor import Actor
from ..audit import record_event
from ..db import inserted_id, write_transaction
from ..errors import CrmkitError, PermissionDenied, RecordNotFound, StaleRecord, StorageUnavailable, ValidationFailed
from ..fields.files import AttachmentType
from ..i18n_text import Text, text
from ..meta.catalog import Catalog
from ..meta.memo import CatalogMemo
from ..meta.model import EntityDef, FieldDef
from ..meta.store import MetadataStore
from ..meta.workflows import transition_entity
from ..permissions.masking import mask_value
from ..policy import Policy
from ..storage import fab_tables, platform_tables as pt
from ..storage.entity_tables import build_tables
from .rollups import refresh_after_write
from .rules import check_rules
from .hooks import RecordWrite, Validator, ValidatorRegistry
from .validation import SchemaCache, validate_input

log = logging.getLogger(__name__)

MAX_BULK = 1000
STATE_BY_TRANSITION = text("The workflow state changes only through the workflow's transitions; leave it out.",
                           "流程状态只能通过流程操作（流转）改变，请不要提交此项。")
SEND_IDS = text("Send a list of record ids.", "请提交记录编号列表。")


# Writes made by an automation pass ``request_id="automation:<key>:<depth>"``; the record event carries it as ``origin``.
ORIGIN_PREFIX = "automation:"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class TableCache:
    """SQLAlchemy tables per catalog version (built once, shared by the read and write paths)."""

    def __init__(self):
        self._version: int | None = None
        self._tables: dict[str, Table] = {}

    def tables(self, catalog: Catalog) -> dict[str, Table]:
        if self._version != catalog.version or not self._tables:
            self._tables = build_tables(catalog)[1]
            self._version = catalog.version
        return self._tables


class RecordService:
    def __init__(self, engine: Engine, store: MetadataStore, policy: Policy, tables: TableCache, *, max_upload_bytes: int = 10 * 1024 * 1024,
                 on_commit: Callable[[], None] | None = None):
        self.engine = engine
        self.on_commit = on_commit  # called after a transaction that wrote outbox events commits (wakes the dispatcher)
        self.store = store
        self.policy = policy
        self.table_cache = tables
        self.schemas = SchemaCache()
        self.max_upload_bytes = max_upload_bytes
        self.listeners: dict[str, list[Callable[[Connection, RecordWritten], None]]] = {}

    def listen(self, entity_key: str, fn: Callable[[Connection, "RecordWritten"], None]) -> None:
        """Call ``fn(conn, written)`` inside the write transaction after each write to ``entity_key`` (app hooks use this)."""
        self.listeners.setdefault(entity_key, []).append(fn)
        self.validators = ValidatorRegistry()

    def add_validator(self, entity_key: str, fn: Validator) -> None:
        """App validators (registered through ``AppHooks.validator``) run inside the write transaction."""
        self.validators.add(entity_key, fn)

    # --- public API ------------------------------------------------------------------
    def create(self, entity_key: str, data: Any, actor: Actor, *, request_id: str | None = None) -> int:
        """Create a record (and its child rows); returns the new id."""
        with self._write() as conn:
            return self._create_on(conn, entity_key, data, actor, request_id)

    def _create_on(self, conn: Connection, entity_key: str, data: Any, actor: Actor, request_id: str | None,
                   assigned: dict | None = None) -> int:
        catalog, entity = self._entity(entity_key)
        self.policy.check(actor, entity, "create")
        values, children = self._clean(catalog, entity, data, actor, creating=True)
        values.update(assigned or {})
        self._run_validators(conn, catalog, entity, values, None, children, actor)
        record_id = self._insert(conn, catalog, entity, values, children, actor, request_id)
        self._check_in_scope(conn, catalog, entity, record_id, actor)
        return record_id

    @contextmanager
    def transaction(self) -> Iterator["RecordTransaction"]:
        """Several creates and updates that commit or roll back together (e.g. converting a lead into an account,
        a contact and an opportunity); each step runs the same checks, audit and events as a single call."""
        with self._write() as conn:
            yield RecordTransaction(self, conn)

    def update(self, entity_key: str, record_id: int, data: Any, actor: Actor, *, expected_version: int | None, request_id: str | None = None,
               within: Callable[[Connection], None] | None = None, assigned: dict | Callable[[Connection], dict] | None = None) -> int:
        """Update the fields present in ``data``; returns the new row version.

        ``expected_version`` is the row_version the caller edited; a different current version is refused.
        ``within`` runs after the update in the same transaction (erasure redacts the audit with it).
        ``assigned`` sets read-only/sequence fields that trusted app code owns (e.g. a card number and card status),
        never user input; they are audited like any other change. A callable gets the transaction's connection.
        """
        with self._write() as conn:
            return self._update_on(conn, entity_key, record_id, data, actor, expected_version, request_id, within, assigned)

    def _update_on(self, conn: Connection, entity_key: str, record_id: int, data: Any, actor: Actor, expected_version: int | None,
                   request_id: str | None, within: Callable[[Connection], None] | None = None,
                   assigned: dict | Callable[[Connection], dict] | None = None) -> int:
        catalog, entity = self._entity(entity_key)
        self.policy.check(actor, entity, "update")
        if expected_version is None:
            raise ValidationFailed({"row_version": [text("Send the row_version of the record you edited, so that concurrent changes are not overwritten.",
                                                         "请提交你编辑时的记录版本号（row_version），以免覆盖他人同时所做的修改。")]})
        current = self._load_for_update(conn, catalog, entity, record_id, actor)
        if current["row_version"] != expected_version:
            raise StaleRecord(
                text("Someone else changed this record after you opened it (you edited version {mine}; it is now version {now}). "
                     "Reload it to see their changes, then apply yours again.",
                     "你打开这条记录后，其他人已修改了这条记录（你编辑的是第 {mine} 版，现在是第 {now} 版）。请重新加载查看对方的修改，再重新应用你的修改。",
                     mine=expected_version, now=current["row_version"]),
                details={"current_version": current["row_version"]},
            )
        values, children = self._clean(catalog, entity, data, actor, creating=False, current=current)
        values.update((assigned(conn) if callable(assigned) else assigned) or {})
        self._run_validators(conn, catalog, entity, values, current, children, actor)
        version = self._update_row(conn, catalog, entity, current, values, children, actor, request_id)
        if within is not None:
            within(conn)
        return version

    def delete(self, entity_key: str, record_id: int, actor: Actor, *, expected_version: int | None = None, request_id: str | None = None) -> None:
        """Soft delete: the record moves to the recycle bin and can be restored."""
        catalog, entity = self._entity(entity_key)
        self.policy.check(actor, entity, "delete")
        with self._write() as conn:
            self._soft_delete(conn, catalog, entity, record_id, actor, expected_version, request_id)

    def restore(self, entity_key: str, record_id: Any, actor: Actor, *, request_id: str | None = None) -> None:
        catalog, entity = self._entity(entity_key)
        self.policy.check(actor, entity, "delete")
        table = self._table(catalog, entity)
        if record_id_or_none(record_id) is None:
            raise RecordNotFound(text("{entity} #{id} does not exist.", "{entity} #{id} 不存在。", entity=entity.label, id=record_id))
        record_id = record_id_or_none(record_id)
        with self._write() as conn:
            row = conn.execute(select(table).where(table.c.id == record_id, *self._scope(catalog, entity, table, actor))).mappings().first()
            if row is None:
                raise RecordNotFound(text("{entity} #{id} does not exist.", "{entity} #{id} 不存在。", entity=entity.label, id=record_id))
            if row["deleted_at"] is None:
                raise ValidationFailed({"_schema": [text("{entity} #{id} is not in the recycle bin.", "{entity} #{id} 不在回收站中。",
                                                         entity=entity.label, id=record_id)]})
            try:
                with conn.begin_nested():
                    conn.execute(table.update().where(table.c.id == record_id).values(deleted_at=None, deleted_by=None, row_version=table.c.row_version + 1, updated_at=utcnow(), updated_by=actor.id))
            except IntegrityError:
                raise ValidationFailed({"_schema": [text("It cannot be restored: another record now uses one of its unique values. Change that record first.",
                                                         "无法恢复：另一条记录已在使用它的某个唯一值。请先修改那条记录。")]}) from None
            refresh_after_write(conn, catalog, self.table_cache.tables(catalog), entity, record_id, {})
            self._audit(conn, entity, record_id, "restore", {}, actor, request_id)
            self._event(conn, entity, record_id, "restored", {}, actor)

    def bulk_update(self, entity_key: str, ids: Iterable[int], data: Any, actor: Actor, *, request_id: str | None = None) -> int:
        """Apply the same change to many records, all or nothing; each gets its own audit entry and event."""
        catalog, entity = self._entity(entity_key)
        self.policy.check(actor, entity, "update")
        self.policy.check(actor, entity, "bulk_edit")
        ids = _ids(ids)
        values, children = self._clean(catalog, entity, data, actor, creating=False, current={})
        if children:
            raise ValidationFailed({k: [text("Child rows cannot be bulk-edited; edit each record.", "子表行不能批量修改，请逐条编辑记录。")] for k in children})
        if not values:
            raise ValidationFailed({"_schema": [text("Choose at least one field to change.", "请至少选择一个要修改的字段。")]})
        changed = 0
        with self._write() as conn:
            for rid in ids:
                current = self._load_for_update(conn, catalog, entity, rid, actor)
                before = current["row_version"]
                row_values = dict(values)
                self._run_validators(conn, catalog, entity, row_values, current, {}, actor)
                if self._update_row(conn, catalog, entity, current, row_values, {}, actor, request_id) != before:
                    changed += 1
        return changed

    def create_within(self, conn: Connection, entity_key: str, data: Any, actor: Actor, *, request_id: str | None = None,
                      assigned: dict | None = None) -> int:
        """``create`` inside the caller's transaction (a workflow action creating a record as part of a transition).
        ``assigned`` presets read-only/sequence fields from trusted app code (a card number drawn from a card pool)."""
        return self._create_on(conn, entity_key, data, actor, request_id, assigned=assigned)

    def update_within(self, conn: Connection, entity_key: str, record_id: int, data: Any, actor: Actor, *, request_id: str | None = None,
                      assigned: dict | None = None) -> int:
        """``update`` inside the caller's transaction (an app's record listener changing another record). The row is
        locked and read here, so there is no stale-version check; returns the new row version. ``assigned`` sets
        read-only fields that trusted app code computes (as in ``update``). App validators run as for every write."""
        catalog, entity = self._entity(entity_key)
        self.policy.check(actor, entity, "update")
        current = self._load_for_update(conn, catalog, entity, record_id, actor)
        values, children = self._clean(catalog, entity, data, actor, creating=False, current=current)
        values.update(assigned or {})
        self._run_validators(conn, catalog, entity, values, current, children, actor)
        return self._update_row(conn, catalog, entity, current, values, children, actor, request_id)

    def adjust_within(self, conn: Connection, entity_key: str, record_id: int, field_name: str, delta: int, actor: Actor, *,
                      at_least: int | None = None, at_most_field: str | None = None, note: dict | None = None,
                      request_id: str | None = None) -> int | None:
        """Add ``delta`` to a numeric counter (reward stock, an offer's use count) in one guarded ``UPDATE``, inside the
        caller's transaction. The guard is part of the statement, so concurrent callers cannot overshoot it: the new
        value must stay ``>= at_least`` and, when ``at_most_field`` names a column, ``<=`` that column's value (a NULL
        limit means unlimited). Returns the new value, or None when the guard refused (nothing written; the caller
        raises its own domain error). On success the row version moves and the usual audit entry, rollups and
        ``record.updated`` event follow, like every other write. No policy check: the caller has authorised the
        business action (a redemption) that moves the counter, not an edit of the record."""
        catalog, entity = self._entity(entity_key)
        if entity.field(field_name).type not in ("integer", "decimal"):
            raise ValueError(f"{entity_key}.{field_name} is not a numeric field")
        table = self._table(catalog, entity)
        column = table.c[field_name]
        new_value = func.coalesce(column, 0) + delta
        guards = [table.c.id == record_id, table.c.deleted_at.is_(None)]
        if at_least is not None:
            guards.append(new_value >= at_least)
        if at_most_field is not None:
            limit = table.c[at_most_field]
            guards.append(or_(limit.is_(None), new_value <= limit))
        done = conn.execute(table.update().where(*guards)
                            .values({field_name: new_value, "row_version": table.c.row_version + 1, "updated_at": utcnow(), "updated_by": actor.id}))
        if done.rowcount != 1:
            return None
        after: Any = conn.execute(select(column).where(table.c.id == record_id)).scalar_one()  # an int or a Decimal
        changes: dict = {field_name: [after - delta, after]}
        if note:
            changes.update(note)
        refresh_after_write(conn, catalog, self.table_cache.tables(catalog), entity, record_id, changes)
        self._audit(conn, entity, record_id, "update", changes, actor, request_id)
        self._event(conn, entity, record_id, "updated", changes, actor, request_id=request_id)
        return after

    # --- the workflow state: written only by crmkit.runtime.workflow ----------------------
    def lock_for_transition(self, conn: Connection, entity_key: str, record_id: int) -> dict:
        """The record, locked for the transaction. No row scope: the workflow service decides who may act."""
        catalog, entity = self._entity(entity_key)
        return self._load_for_update(conn, catalog, entity, record_id)

    def write_transition(self, conn: Connection, entity_key: str, current: dict, state: str, data: dict, fields: Iterable[str],
                         actor: Actor, *, request_id: str | None = None) -> int:
        """Move ``current`` to ``state`` and write ``data`` (only ``fields`` may be set), with the usual
        validation, rules, audit entry and ``record.updated`` event. Returns the new row version."""
        catalog, entity = self._entity(entity_key)
        fields = tuple(fields)
        values = validate_input(catalog, transition_entity(entity, fields), data, self.schemas, creating=False, writable=fields,
                                current=current) if data else {}
        for f in entity.fields:
            derive = getattr(catalog.type_of(f), "derived_values", None)
            if derive and f.name in values:
                for target, v in derive(f, values[f.name]).items():
                    if current.get(target) in (None, "") and target not in values:
                        values[target] = v
        values["workflow_state"] = state
        wf = catalog.workflow_of(entity)
        if wf is not None and wf.field:
            values[wf.field] = state  # the mirrored field follows the state
        # App validators see the transition like any update (e.g. values derived from the new stage).
        self._run_validators(conn, catalog, entity, values, current, {}, actor)
        return self._update_row(conn, catalog, entity, current, values, {}, actor, request_id)

    def bulk_delete(self, entity_key: str, ids: Iterable[int], actor: Actor, *, request_id: str | None = None) -> int:
        catalog, entity = self._entity(entity_key)
        self.policy.check(actor, entity, "delete")
        self.policy.check(actor, entity, "bulk_edit")
        ids = _ids(ids)
        with self._write() as conn:
            for rid in ids:
                self._soft_delete(conn, catalog, entity, rid, actor, None, request_id)
        return len(ids)

    def write_many(self, entity_key: str, items: list, actor: Actor, *, mode: str = "insert", key: str | None = None,
                   request_id: str | None = None, within: Callable | None = None, dry_run: bool = False) -> list:
        """Batched create/update/upsert with the same per-record steps; see ``records/batch.py``."""
        from .batch import write_many

        return write_many(self, entity_key, items, actor, mode=mode, key=key, request_id=request_id, within=within, dry_run=dry_run)

    def store_file(self, upload_dir, filename: str, content_type: str, data: bytes, actor: Actor) -> dict:
        """Keep an uploaded file under ``var/files``; an attachment field then refers to its id."""
        import hashlib
        from pathlib import Path

        if len(data) > self.max_upload_bytes:
            raise ValidationFailed({"file": [text("The file is larger than {n} MB.", "文件超过 {n} MB 的上限，请压缩后或换一个文件上传。",
                                                  n=self.max_upload_bytes // (1024 * 1024))]})
        name = Path(filename or "file").name[:255] or "file"
        fid = uuid.uuid4().hex
        folder = Path(upload_dir) / fid[:2]
        final, partial = folder / fid, folder / (fid + ".part")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(data)  # written under a temporary name, so a failed write never leaves a file behind
            os.replace(partial, final)
        except OSError as exc:
            if folder.is_dir():
                partial.unlink(missing_ok=True)
            log.error("could not store an upload in %s: %s", folder, exc.strerror or exc)
            raise StorageUnavailable() from None
        row = {"id": fid, "name": name, "size": len(data), "content_type": (content_type or "application/octet-stream")[:100],
               "sha256": hashlib.sha256(data).hexdigest(), "created_at": utcnow(), "created_by": actor.id}
        with write_transaction(self.engine) as conn:
            conn.execute(pt.stored_file.insert().values(**row))
        return {k: row[k] for k in ("id", "name", "size", "content_type")}

    # --- steps -----------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction; after it commits, ``on_commit`` wakes the outbox dispatcher."""
        with write_transaction(self.engine) as conn:
            yield conn
        if self.on_commit is not None:
            try:
                self.on_commit()
            except Exception:  # the periodic dispatch picks the events up anyway
                logging.getLogger(__name__).exception("outbox wake-up failed")

    def _entity(self, key: str) -> tuple[Catalog, EntityDef]:
        catalog = self.store.catalog()
        entity = catalog.entity(key)
        if entity.is_child:
            raise ValidationFailed({"_schema": [text("{entity} rows are edited through their parent {parent}.", "{entity}的行需在其上级记录（{parent}）中编辑。",
                                                     entity=entity.label, parent=entity.parent)]})
        return catalog, entity

    def _table(self, catalog: Catalog, entity: EntityDef) -> Table:
        return self.table_cache.tables(catalog)[entity.key]

    def _clean(self, catalog, entity, data, actor, *, creating: bool, current: dict | None = None, access=None) -> tuple[dict, dict]:
        """``access``: the actor's ``policy.access`` for the entity when the caller already has it (a batch asks once)."""
        if access is None and actor is not None:
            access = self.policy.access(actor, entity)
        data, seen = self._guard_input(catalog, entity, data, actor, current, access)
        values = validate_input(catalog, entity, data, self.schemas, creating=creating,
                                writable=access.writable if access is not None else self.policy.writable_fields(actor, entity), current=seen)
        child_names, defaults, derived = _clean_plan(catalog, entity)
        children = {}
        for name in child_names:
            if name in values:
                children[name] = values.pop(name) or []
        if creating:
            for f, ft in defaults:
                if f.name not in values:
                    values[f.name] = ft._deserialize(f, f.default)
        for f, derive in derived:
            if f.name in values:
                for target, v in derive(f, values[f.name]).items():
                    existing = values.get(target, (current or {}).get(target))
                    if existing in (None, ""):
                        values[target] = v
        return values, children

    def _run_validators(self, conn, catalog, entity, values, current, children, actor) -> None:
        errors = self.validators.run(RecordWrite(conn, catalog, entity, values, current, children, actor, self.table_cache.tables(catalog)))
        if errors:
            raise ValidationFailed(errors)

    def _check_references(self, conn: Connection, catalog: Catalog, entity: EntityDef, values: dict, exclude_id: int | None) -> None:
        """Links point at live records, files exist, unique values are free: a field error instead of a DB error."""
        tables = self.table_cache.tables(catalog)
        errors: dict[str, list[str]] = {}
        table = tables[entity.key]
        for name, value in values.items():
            f = entity.field_map.get(name)
            if f is None or value in (None, [], ""):
                continue
            ft = catalog.type_of(f)
            if f.type == "link":
                target = catalog.entities[f.opt("target")]
                tt = tables[target.key]
                if not conn.execute(select(exists().where(tt.c.id == value, tt.c.deleted_at.is_(None)))).scalar():
                    errors.setdefault(name, []).append(text("There is no {entity} with id {id}.", "编号为 {id} 的{entity}不存在，请重新选择。",
                                                            entity=target.label, id=value))
            elif f.type in ("user", "org_unit"):
                ref = pt.org_unit if f.type == "org_unit" else fab_tables.ab_user
                if not conn.execute(select(exists().where(ref.c.id == value))).scalar():
                    kind = Text("org unit", "组织") if f.type == "org_unit" else Text("user", "用户")
                    errors.setdefault(name, []).append(text("There is no {kind} with id {id}.", "编号为 {id} 的{kind}不存在，请重新选择。", kind=kind, id=value))
            elif f.type == "attachment" and isinstance(ft, AttachmentType):
                rows = {r.id: r for r in conn.execute(select(pt.stored_file).where(pt.stored_file.c.id.in_(value)))}
                missing = [v for v in value if v not in rows]
                if missing:
                    errors.setdefault(name, []).append(text("A file is missing; upload it again.", "有文件已丢失，请重新上传。"))
                else:
                    limit = ft.max_bytes(f, self.max_upload_bytes)
                    for r in rows.values():
                        if r.size > limit:
                            errors.setdefault(name, []).append(text("'{file}' is larger than {n} KB.", "“{file}”超过 {n} KB 的上限。", file=r.name, n=limit // 1024))
                        if not ft.accepts(f, r.name):
                            errors.setdefault(name, []).append(text("'{file}' is not an accepted file type ({types}).", "“{file}”的文件类型不可用，可用类型：{types}。",
                                                                    file=r.name, types=", ".join(f.opt("accept"))))
                    if f.opt("max_files") and len(value) > f.opt("max_files"):
                        errors.setdefault(name, []).append(text("At most {n} files.", "最多 {n} 个文件。", n=f.opt("max_files")))
                    values[name] = [{"id": v, "name": rows[v].name, "size": rows[v].size, "content_type": rows[v].content_type} for v in value]
            if f.unique and ft.stored:
                q = select(table.c.id).where(table.c[name] == value, table.c.deleted_at.is_(None))
                if exclude_id is not None:
                    q = q.where(table.c.id != exclude_id)
                if conn.execute(q.limit(1)).first() is not None:
                    errors.setdefault(name, []).append(text("This value is already used by another {entity}.", "该值已被其他{entity}使用。", entity=entity.label))
        if errors:
            raise ValidationFailed(errors)

    def _insert(self, conn, catalog, entity, values, children, actor, request_id, parent_id: int | None = None, sort_order: int = 0) -> int:
        table = self._table(catalog, entity)
        self._check_references(conn, catalog, entity, values, None)
        if parent_id is None:  # child rows are checked with their row's position in _write_children
            check_rules(conn, catalog, self.table_cache.tables(catalog), entity, values)
        for f in entity.fields:
            if f.type == "sequence" and values.get(f.name) in (None, ""):
                values[f.name] = catalog.type_of(f).format(f, next_sequence(conn, f"{entity.key}.{f.id}", int(f.opt("start", 1))))
        now = utcnow()
        row = dict(values, created_at=now, updated_at=now, created_by=actor.id, updated_by=actor.id, owner_id=actor.id,
                   org_unit_id=actor.org_unit_id, row_version=1)
        if parent_id is not None:
            row.update(parent_id=parent_id, sort_order=sort_order)
        elif catalog.workflow_of(entity) is not None:
            wf = catalog.workflow_of(entity)
            row["workflow_state"] = wf.initial.name  # a new record starts in the initial state
            if wf.field:
                row[wf.field] = values[wf.field] = wf.initial.name
        try:
            with conn.begin_nested():
                record_id = inserted_id(conn.execute(table.insert().values(**row)))
        except IntegrityError as exc:
            raise _integrity(entity, exc) from None
        changes: dict[str, Any] = {k: [None, _json(catalog, entity, k, v)] for k, v in values.items()}
        for field_name, rows in children.items():
            changes[field_name] = self._write_children(conn, catalog, entity, entity.field(field_name), record_id, rows, actor, request_id, existing={})
        if parent_id is None:
            refresh_after_write(conn, catalog, self.table_cache.tables(catalog), entity, record_id, changes)
            self._audit(conn, entity, record_id, "create", changes, actor, request_id)
            self._event(conn, entity, record_id, "created", changes, actor, request_id=request_id)
        return record_id

    def _scope(self, catalog, entity, table, actor) -> list:
        """The actor's row scope as a list of zero or one where-clauses: writes reach only rows the actor can see."""
        if actor is None:
            return []
        clause = self.policy.row_filter(actor, entity, table, catalog)
        return [] if clause is None else [clause]

    def _check_in_scope(self, conn, catalog, entity, record_id, actor) -> None:
        """A scoped actor cannot create a record they would not be able to see (the transaction rolls back)."""
        table = self._table(catalog, entity)
        scope = self._scope(catalog, entity, table, actor)
        if scope and conn.execute(select(table.c.id).where(table.c.id == record_id, *scope)).first() is None:
            raise PermissionDenied(text("This {entity} would be outside the records you may see, so it was not created. "
                                        "Ask an administrator to widen your row scope.",
                                        "这条{entity}将超出你可查看的记录范围，因此未创建。请联系管理员扩大你的数据范围。", entity=entity.label))

    def _guard_input(self, catalog, entity, data, actor, current: dict | None, access=None) -> tuple[Any, dict | None]:
        """Refuse hidden fields outright and treat an unchanged masked value as unchanged (mass-assignment guard).

        Returns the input to validate and the record as the actor sees it (masked, hidden fields left out), so the
        "same value" allowance for read-only fields cannot be used to guess a hidden or masked value.
        """
        if isinstance(data, dict) and "workflow_state" in data:
            # Only transitions change the state; a fetched record sent back unchanged (or null) is fine.
            sent = data["workflow_state"]
            if sent not in (None, "") and not (current and sent == current.get("workflow_state")):
                raise ValidationFailed({"workflow_state": [STATE_BY_TRANSITION]})
            data = {k: v for k, v in data.items() if k != "workflow_state"}
        if not isinstance(data, dict) or actor is None:
            return data, current
        access = access or self.policy.access(actor, entity)
        readable = set(access.readable)
        masked = access.masked
        errors = {}
        data = dict(data)
        for name in list(data):
            f = entity.field_map.get(name)
            if f is None:
                continue
            if name not in readable:
                if data[name] not in (None, "", []):
                    errors[name] = [text("You may not change this field.", "你没有修改此项的权限。")]
                data.pop(name)
            elif name in masked and current and current.get(name) not in (None, ""):
                if isinstance(data[name], str) and data[name] == mask_value(masked[name], current.get(name)):
                    data.pop(name)  # the masked text sent back unchanged (a form or an API round trip)
        if errors:
            raise ValidationFailed(errors)
        if not current:
            return data, current
        seen = {k: v for k, v in current.items() if k in readable or k not in entity.field_map}
        for name, style in masked.items():
            if name in seen and name not in access.unmaskable:
                seen[name] = mask_value(style, seen[name])
        return data, seen

    def _load_for_update(self, conn, catalog, entity, record_id, actor=None) -> dict:
        table = self._table(catalog, entity)
        if record_id_or_none(record_id) is None:
            raise RecordNotFound(text("{entity} #{id} does not exist or was deleted.", "{entity} #{id} 不存在或已被删除。", entity=entity.label, id=record_id))
        q = select(table).where(table.c.id == record_id_or_none(record_id), *self._scope(catalog, entity, table, actor))
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        row = conn.execute(q).mappings().first()
        if row is None or row["deleted_at"] is not None:
            raise RecordNotFound(text("{entity} #{id} does not exist or was deleted.", "{entity} #{id} 不存在或已被删除。", entity=entity.label, id=record_id))
        current = dict(row)
        for f in entity.fields:
            if f.name in current:
                current[f.name] = catalog.type_of(f).from_db(f, current[f.name])
        return current

    def _update_row(self, conn, catalog, entity, current, values, children, actor, request_id) -> int:
        table = self._table(catalog, entity)
        changed = {k: v for k, v in values.items() if _differs(current.get(k), v)}
        self._check_references(conn, catalog, entity, changed, current["id"])
        check_rules(conn, catalog, self.table_cache.tables(catalog), entity, {**current, **values})
        changes: dict[str, Any] = {k: [_json(catalog, entity, k, current.get(k)), _json(catalog, entity, k, v)] for k, v in changed.items()}
        for field_name, rows in children.items():
            child_changes = self._write_children(conn, catalog, entity, entity.field(field_name), current["id"], rows, actor, request_id, existing=None)
            if any(child_changes.values()):
                changes[field_name] = child_changes
        if not changes:
            return current["row_version"]
        new_version = current["row_version"] + 1
        try:
            with conn.begin_nested():
                result = conn.execute(
                    table.update().where(table.c.id == current["id"], table.c.row_version == current["row_version"])
                    .values(**changed, row_version=new_version, updated_at=utcnow(), updated_by=actor.id)
                )
        except IntegrityError as exc:
            raise _integrity(entity, exc) from None
        if result.rowcount != 1:
            raise StaleRecord(text("Someone else changed this record at the same moment. Reload it and apply your change again.",
                                   "其他人在同一时刻修改了这条记录。请重新加载，再应用你的修改。"))
        refresh_after_write(conn, catalog, self.table_cache.tables(catalog), entity, current["id"], changes)
        self._audit(conn, entity, current["id"], "update", changes, actor, request_id)
        self._event(conn, entity, current["id"], "updated", changes, actor, request_id=request_id)
        return new_version

    def _write_children(self, conn, catalog, parent, f: FieldDef, parent_id, rows, actor, request_id, existing) -> dict:
        child = catalog.entities[f.opt("entity")]
        table = self._table(catalog, child)
        if f.opt("max_rows") and len(rows) > f.opt("max_rows"):
            raise ValidationFailed({f.name: [text("At most {n} rows.", "最多 {n} 行。", n=f.opt("max_rows"))]})
        if existing is None:
            existing = {r["id"]: dict(r) for r in conn.execute(select(table).where(table.c.parent_id == parent_id)).mappings()}
        errors: dict[str, list] = {}
        plan = []
        for i, raw in enumerate(rows):
            if not isinstance(raw, dict):
                errors[f"{f.name}.{i}"] = [text("Each row must be an object of field values.", "每一行都应是由字段值组成的对象。")]
                continue
            rid = raw.get("id")
            cur = existing.get(rid) if rid is not None else None
            if rid is not None and cur is None:
                errors[f"{f.name}.{i}.id"] = [text("Row {id} does not belong to this record.", "编号为 {id} 的行不属于这条记录。", id=rid)]
                continue
            try:
                cleaned = validate_input(catalog, child, raw, self.schemas, creating=cur is None, writable=self.policy.writable_fields(actor, child), current=cur)
                check_rules(conn, catalog, self.table_cache.tables(catalog), child, {**(cur or {}), **cleaned})
            except ValidationFailed as exc:
                for k, msgs in exc.field_errors.items():
                    errors[f"{f.name}.{i}.{k}"] = msgs
                continue
            plan.append((i, cur, cleaned))
        if errors:
            raise ValidationFailed(errors)
        out: dict[str, Any] = {"added": [], "changed": {}, "removed": []}
        kept = set()
        for i, cur, cleaned in plan:
            if cur is None:
                cid = self._insert(conn, catalog, child, cleaned, {}, actor, request_id, parent_id=parent_id, sort_order=i)
                out["added"].append({"id": cid, **{k: _json(catalog, child, k, v) for k, v in cleaned.items()}})
            else:
                kept.add(cur["id"])
                diff = {k: v for k, v in cleaned.items() if _differs(cur.get(k), v)}
                if diff or cur.get("sort_order") != i:
                    self._check_references(conn, catalog, child, diff, cur["id"])
                    conn.execute(table.update().where(table.c.id == cur["id"]).values(**diff, sort_order=i, updated_at=utcnow(), updated_by=actor.id, row_version=table.c.row_version + 1))
                if diff:
                    out["changed"][str(cur["id"])] = {k: [_json(catalog, child, k, cur.get(k)), _json(catalog, child, k, v)] for k, v in diff.items()}
        for cid in existing:
            if cid not in kept:
                conn.execute(table.delete().where(table.c.id == cid))
                out["removed"].append(cid)
        return out

    def _soft_delete(self, conn, catalog, entity, record_id, actor, expected_version, request_id) -> None:
        table = self._table(catalog, entity)
        current = self._load_for_update(conn, catalog, entity, record_id, actor)
        if expected_version is not None and current["row_version"] != expected_version:
            raise StaleRecord(text("Someone else changed this record after you opened it. Reload it before deleting.",
                                   "你打开这条记录后，其他人已修改了它。请重新加载后再删除。"))
        record_id = current["id"]
        now = utcnow()  # updated_at moves too, so incremental sync sees the deletion
        conn.execute(table.update().where(table.c.id == record_id).values(deleted_at=now, deleted_by=actor.id, updated_at=now, row_version=table.c.row_version + 1))
        refresh_after_write(conn, catalog, self.table_cache.tables(catalog), entity, record_id, {})  # after: the rollups leave it out
        self._audit(conn, entity, record_id, "delete", {}, actor, request_id)
        self._event(conn, entity, record_id, "deleted", {}, actor)

    def _audit(self, conn, entity, record_id, action, changes, actor, request_id) -> None:
        record_event(conn, category="record", action=action, actor_id=actor.id, entity=entity.key, record_id=record_id,
                     changes=changes, request_id=request_id)

    def _event(self, conn, entity, record_id, verb, changes, actor, request_id: str | None = None) -> None:
        payload = {"entity": entity.key, "id": record_id, "changes": changes, "actor_id": actor.id}
        if request_id and request_id.startswith(ORIGIN_PREFIX):  # an automation's own write: its loop guard reads this
            payload["origin"] = request_id
        conn.execute(pt.outbox.insert().values(created_at=utcnow(), topic=f"record.{verb}", entity=entity.key, record_id=record_id, payload=payload))
        if self.listeners.get(entity.key):
            tables = self.table_cache.tables(self.store.catalog())
            for fn in self.listeners[entity.key]:
                fn(conn, RecordWritten(entity=entity.key, record_id=record_id, verb=verb, changes=changes, actor=actor, tables=tables, records=self))


@dataclass(frozen=True)
class RecordWritten:
    """What a record listener gets: the change, and the entity tables to read rows in the same transaction."""

    entity: str
    record_id: int
    verb: str  # created / updated / deleted / restored
    changes: dict
    actor: Actor
    tables: dict[str, Table]
    # The record service, so a listener writes other records in the same transaction (create_within / update_within).
    records: "RecordService | None" = None

    @property
    def table(self) -> Table:
        return self.tables[self.entity]


class RecordTransaction:
    """The record service's create and update on one shared connection (see ``RecordService.transaction``)."""

    def __init__(self, service: RecordService, conn: Connection):
        self.service, self.conn = service, conn

    def create(self, entity_key: str, data: Any, actor: Actor, *, request_id: str | None = None) -> int:
        return self.service._create_on(self.conn, entity_key, data, actor, request_id)

    def update(self, entity_key: str, record_id: int, data: Any, actor: Actor, *, expected_version: int | None, request_id: str | None = None) -> int:
        return self.service._update_on(self.conn, entity_key, record_id, data, actor, expected_version, request_id)


def next_sequence(conn: Connection, key: str, start: int) -> int:
    """Gap-free: the counter row changes inside the caller's transaction and rolls back with it."""
    row = conn.execute(pt.sequence.update().where(pt.sequence.c.key == key).values(value=pt.sequence.c.value + 1).returning(pt.sequence.c.value)).first()
    if row is not None:
        return row[0]
    try:
        with conn.begin_nested():
            conn.execute(pt.sequence.insert().values(key=key, value=start))
        return start
    except IntegrityError:
        return conn.execute(pt.sequence.update().where(pt.sequence.c.key == key).values(value=pt.sequence.c.value + 1).returning(pt.sequence.c.value)).scalar_one()


_PLANS = CatalogMemo()


def _clean_plan(catalog: Catalog, entity: EntityDef) -> tuple:
    """(child-table field names, (field, type) with a stored default, (field, derive) for types deriving other
    fields), once per compiled entity instead of three passes over every field per record."""
    def build():
        types = [(f, catalog.type_of(f)) for f in entity.fields]
        return (tuple(f.name for f, _ in types if f.type == "child_table"),
                tuple((f, ft) for f, ft in types if f.default is not None and ft.stored),
                tuple((f, d) for f, ft in types if (d := getattr(ft, "derived_values", None))))
    return _PLANS.get(catalog, ("clean", entity.key), build)


def json_converters(catalog: Catalog, entity: EntityDef) -> dict:
    """Field name → ``to_json`` of its type, bound to the field: ``_json`` for a whole batch without a lookup per value."""
    def build():
        return {f.name: partial(catalog.type_of(f).to_json, f) for f in entity.fields}
    return _PLANS.get(catalog, ("json", entity.key), build)


def _differs(old, new) -> bool:
    if old is None and new in ([], ""):
        return False
    return old != new


def _json(catalog: Catalog, entity: EntityDef, name: str, value):
    f = entity.field_map.get(name)
    if f is None or value is None:
        return value
    return catalog.type_of(f).to_json(f, value)


MAX_RECORD_ID = 2**63 - 1


def record_id_or_none(value) -> int | None:
    """A value usable as a record id (a positive 64-bit integer), or None. Never sent to SQL otherwise."""
    if isinstance(value, bool):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if isinstance(value, float) and value != n:
        return None
    return n if 0 < n <= MAX_RECORD_ID else None


def _ids(ids) -> list[int]:
    try:
        raw = list(ids)
    except TypeError:
        raise ValidationFailed({"ids": [SEND_IDS]}) from None
    out = list(dict.fromkeys(record_id_or_none(i) for i in raw))
    if None in out:
        raise ValidationFailed({"ids": [SEND_IDS]})
    if not out:
        raise ValidationFailed({"ids": [text("Select at least one record.", "请至少选择一条记录。")]})
    if len(out) > MAX_BULK:
        raise ValidationFailed({"ids": [text("At most {n} records at once.", "一次最多处理 {n} 条记录。", n=MAX_BULK)]})
    return [i for i in out if i is not None]


def _integrity(entity: EntityDef, exc: IntegrityError) -> CrmkitError:
    msg = str(exc.orig)
    for f in entity.fields:
        if f.name in msg:
            return ValidationFailed({f.name: [text("This value conflicts with another record (it must be unique or refer to an existing record).",
                                                   "该值与其他记录冲突（它必须唯一，或必须指向已存在的记录）。")]})
    return ValidationFailed({"_schema": [text("The change conflicts with other data (a unique value or a reference). Check the values and try again.",
                                              "此修改与其他数据冲突（唯一值或关联）。请检查后重试。")]})
