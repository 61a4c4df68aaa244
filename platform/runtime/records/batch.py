"""Batched create / update / upsert: the per-record steps of ``RecordService``, with the statements batched.

Every record still goes through ``RecordService._clean`` (input guard, marshmallow validation, read-only and
writable-field rules, defaults, derived values), the same reference and unique checks (as one query per field
for the whole batch instead of one per record), the row-scope check, one audit entry and one outbox event.
What changes is the number of statements: rows are inserted with one executemany (ids come back in order),
audit entries are chained in one executemany (``audit.record_events``), outbox events likewise, and sequence
numbers are reserved as one block.

A record that fails validation is reported in its ``ItemResult`` and left out; the others commit together.
A database error (a race on a unique value) rolls the whole batch back and is raised, so the caller can retry
record by record.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import ARRAY, Connection, any_, bindparam, func, select, text as sql_text
from sqlalchemy.exc import IntegrityError

from ..actor import Actor
from ..audit import record_events
from ..errors import PermissionDenied, ValidationFailed
from ..i18n_text import Text, text
from ..storage import fab_tables, platform_tables as pt
from ..storage.bulk_insert import insert_rows
from .rollups import refresh_after_write, rollups_by_source
from .rules import check_rules
from .service import _differs, _integrity, _json, json_converters, utcnow

MODES = ("insert", "update", "upsert")
UNIQUE_TAKEN = lambda entity: text("This value is already used by another {entity}.", "该值已被其他{entity}使用。", entity=entity.label)  # noqa: E731


@dataclass
class ItemResult:
    index: int
    action: str  # created | updated | unchanged | skipped | error
    id: int | None = None
    errors: dict[str, list] = field(default_factory=dict)

    def to_json(self, locale: str | None = None) -> dict:
        out: dict[str, Any] = {"index": self.index, "status": self.action}
        if self.id is not None:
            out["id"] = self.id
        if self.errors:
            out["errors"] = {k: [m.get(locale) if isinstance(m, Text) else str(m) for m in v] for k, v in self.errors.items()}
        return out


class DryRun(Exception):
    """Raised inside the transaction to roll a dry run back."""


_CUSTOM_PLANS = sql_text("SET LOCAL plan_cache_mode = force_custom_plan")


def _plan_each_statement(conn: Connection) -> None:
    """PostgreSQL: plan this batch's lookups for the values they get, not once for all batches.

    A bulk load grows its table from nothing. psycopg prepares a statement run five times on a connection, and
    PostgreSQL may then keep one generic plan for it, made while the table was small: a sequential scan that compares
    every row with the batch's 1,000 key values. At 20,000 rows that took 0.6 s per lookup and made an import 4×
    slower (bench imports). Custom plans see the values, so they use the key's index (and hash the list); planning
    costs well under a millisecond per statement, ~17 statements per batch."""
    if conn.dialect.name == "postgresql":
        conn.execute(_CUSTOM_PLANS)


def write_many(service, entity_key: str, items: list[Any], actor: Actor, *, mode: str = "insert", key: str | None = None,
               request_id: str | None = None, within: Callable[[Connection, list[ItemResult]], None] | None = None,
               dry_run: bool = False) -> list[ItemResult]:
    """Create and/or update many records of one entity in one transaction; one ItemResult per item, in order."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    catalog, entity = service._entity(entity_key)
    if mode in ("insert", "upsert"):
        service.policy.check(actor, entity, "create")
    if mode in ("update", "upsert"):
        service.policy.check(actor, entity, "update")
    key_field = None
    if key or mode != "insert":
        key_field = entity.field_map.get(key or "")
        if key_field is None or not key_field.unique or not catalog.type_of(key_field).stored:
            raise ValidationFailed({"key": [text("Choose a unique field as the key to match records by.", "请选择一个唯一字段作为匹配记录的依据。")]})
    table = service._table(catalog, entity)
    results = [ItemResult(i, "error") for i in range(len(items))]
    try:
        with service._write() as conn:  # the same transaction wrapper as single writes (wakes the outbox after commit)
            _plan_each_statement(conn)
            existing = _existing(service, conn, catalog, entity, table, items, results, key_field, actor, mode) if key_field else {}
            creates, updates = _plan(service, catalog, entity, items, results, existing, key_field, mode, actor)
            _check_batch(service, conn, catalog, entity, creates, updates, results, actor)
            creates = [(i, v, c) for i, v, c in creates if not results[i].errors]
            updates = [(i, cur, v, c) for i, cur, v, c in updates if not results[i].errors]
            events: list[tuple[int, str, dict]] = []
            _do_creates(service, conn, catalog, entity, table, creates, results, events, actor, request_id)
            _do_updates(service, conn, catalog, entity, table, updates, results, events, actor, request_id)
            _write_events(service, conn, entity, events, actor, request_id)
            if within is not None:
                within(conn, results)
            if dry_run:
                raise DryRun()
    except DryRun:
        pass
    return results


def _existing(service, conn, catalog, entity, table, items, results, key_field, actor, mode) -> dict:
    """The live records matching the items' key values (within the actor's row scope), keyed by key value."""
    ft = catalog.type_of(key_field)
    values = set()
    for i, item in enumerate(items):
        raw = item.get(key_field.name) if isinstance(item, dict) else None
        try:
            v = ft._deserialize(key_field, raw) if raw not in (None, "") else None
        except ValueError as exc:
            results[i].errors.setdefault(key_field.name, []).append(exc.args[0])
            continue
        if v is None:
            if mode == "update":  # nothing to match; insert and upsert simply create it
                results[i].errors.setdefault(key_field.name, []).append(text("The key field is empty; it is needed to match a record.",
                                                                           "匹配字段为空，无法找到对应记录。"))
            continue
        values.add(v)
    out = {}
    col = table.c[key_field.name]
    for chunk in _chunks(conn, values):
        q = select(table).where(_among(conn, col, chunk), table.c.deleted_at.is_(None), *service._scope(catalog, entity, table, actor))
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        for row in conn.execute(q).mappings():
            current = dict(row)
            for f in entity.fields:
                if f.name in current:
                    current[f.name] = catalog.type_of(f).from_db(f, current[f.name])
            out[current[key_field.name]] = current
    return out


def _plan(service, catalog, entity, items, results, existing, key_field, mode, actor):
    creates, updates = [], []
    seen_keys: dict[Any, int] = {}
    access = service.policy.access(actor, entity) if actor is not None else None  # once per batch, not per record
    for i, item in enumerate(items):
        r = results[i]
        if r.errors:
            continue
        current = None
        if key_field is not None:
            kv = catalog.type_of(key_field)._deserialize(key_field, item.get(key_field.name)) if item.get(key_field.name) not in (None, "") else None
            if kv is not None and kv in seen_keys:
                r.errors[key_field.name] = [text("The same key as item {n} in this batch.", "与本批第 {n} 项的匹配值重复。", n=seen_keys[kv] + 1)]
                continue
            if kv is not None:
                seen_keys[kv] = i
            current = existing.get(kv) if kv is not None else None
        if current is None and mode == "update":
            r.action = "skipped"
            continue
        if current is not None and mode == "insert":
            r.action = "skipped"
            continue
        try:
            if current is None:
                data = item
                if key_field is not None and catalog.type_of(key_field).name == "sequence" and isinstance(item, dict):
                    data = {k: v for k, v in item.items() if k != key_field.name}
                values, children = service._clean(catalog, entity, data, actor, creating=True, access=access)
                creates.append((i, values, children))
            else:
                values, children = service._clean(catalog, entity, item, actor, creating=False, current=current, access=access)
                updates.append((i, current, values, children))
        except ValidationFailed as exc:
            r.errors.update(exc.field_errors)
    return creates, updates


def _check_batch(service, conn, catalog, entity, creates, updates, results, actor) -> None:
    """References and unique values for the whole batch: one query per field, not per record; then the entity's
    rules (validations, required_if) per record, exactly as a single write checks them."""
    tables = service.table_cache.tables(catalog)
    table = tables[entity.key]
    for i, v, c in creates:
        _rules(conn, catalog, tables, entity, v, results[i])
        _validators(service, conn, catalog, entity, v, None, c, actor, results[i])
    for i, cur, v, c in updates:
        _rules(conn, catalog, tables, entity, {**cur, **v}, results[i])
        _validators(service, conn, catalog, entity, v, cur, c, actor, results[i])
    # (item index, values to check, own id or None)
    work = [(i, v, None) for i, v, _ in creates] + [(i, {k: x for k, x in v.items() if _differs(cur.get(k), x)}, cur["id"]) for i, cur, v, _ in updates]
    for f in entity.fields:
        if not f.unique and f.type not in ("link", "user", "org_unit", "attachment"):
            continue
        ft = catalog.type_of(f)
        wanted = [(i, vals[f.name], own) for i, vals, own in work if vals.get(f.name) not in (None, [], "")]
        if not wanted:
            continue
        if f.type == "attachment":
            for i, vals, own in work:
                if vals.get(f.name) not in (None, [], ""):
                    try:
                        service._check_references(conn, catalog, entity, {f.name: vals[f.name]}, own)
                    except ValidationFailed as exc:
                        _merge(results[i], exc.field_errors)
            continue
        if f.type in ("link", "user", "org_unit"):
            if f.type == "link":
                target = catalog.entities[f.opt("target")]
                tt = tables[target.key]
                found = _present(conn, tt.c.id, {v for _, v, _ in wanted}, tt.c.deleted_at.is_(None))
                msg = lambda v, target=target: text("There is no {entity} with id {id}.", "编号为 {id} 的{entity}不存在，请重新选择。", entity=target.label, id=v)
            else:
                ref = pt.org_unit if f.type == "org_unit" else fab_tables.ab_user
                found = _present(conn, ref.c.id, {v for _, v, _ in wanted})
                kind = Text("org unit", "组织") if f.type == "org_unit" else Text("user", "用户")
                msg = lambda v, kind=kind: text("There is no {kind} with id {id}.", "编号为 {id} 的{kind}不存在，请重新选择。", kind=kind, id=v)
            for i, v, _ in wanted:
                if v not in found:
                    results[i].errors.setdefault(f.name, []).append(msg(v))
        if f.unique and ft.stored:
            col = table.c[f.name]
            taken: dict[Any, set] = defaultdict(set)
            for chunk in _chunks(conn, {v for _, v, _ in wanted}):
                for rid, v in conn.execute(select(table.c.id, col).where(_among(conn, col, chunk), table.c.deleted_at.is_(None))):
                    taken[v].add(rid)
            first: dict[Any, int] = {}
            for i, v, own in wanted:
                if taken.get(v, set()) - {own}:
                    results[i].errors.setdefault(f.name, []).append(UNIQUE_TAKEN(entity))
                elif v in first:
                    results[i].errors.setdefault(f.name, []).append(text("The same value as item {n} in this batch; it must be unique.",
                                                                         "与本批第 {n} 项的值相同，此项必须唯一。", n=first[v] + 1))
                else:
                    first[v] = i


def _rules(conn, catalog, tables, entity, record, result: "ItemResult") -> None:
    try:
        check_rules(conn, catalog, tables, entity, record)
    except ValidationFailed as exc:
        _merge(result, exc.field_errors)


def _validators(service, conn, catalog, entity, values, current, children, actor, result: "ItemResult") -> None:
    """App validators (AppHooks.validator), as a single write runs them; their errors belong to this item only."""
    if result.errors:
        return
    try:
        service._run_validators(conn, catalog, entity, values, current, children, actor)
    except ValidationFailed as exc:
        _merge(result, exc.field_errors)


def _present(conn, col, values: set, *where) -> set:
    out: set = set()
    for chunk in _chunks(conn, values):
        out.update(r[0] for r in conn.execute(select(col).where(_among(conn, col, chunk), *where)))
    return out


def _chunks(conn, values) -> list[list]:
    """The values in chunks of one statement each: PostgreSQL takes the whole set as one array parameter; elsewhere
    ``IN`` lists of 500 (SQLite's bound-parameter limit)."""
    vals = list(values)
    size = 20_000 if conn.dialect.name == "postgresql" else 500
    return [vals[start:start + size] for start in range(0, len(vals), size)]


def _among(conn, col, values: list):
    """``col IN values``: on PostgreSQL ``col = ANY(:array)``, one parameter instead of one per value, so the statement
    stays small and psycopg does not re-parse a thousand placeholders per query."""
    if conn.dialect.name == "postgresql":
        return col == any_(bindparam(None, list(values), type_=ARRAY(col.type)))
    return col.in_(values)


def _merge(result: ItemResult, errors: dict) -> None:
    for k, v in errors.items():
        result.errors.setdefault(k, []).extend(v)


def reserve_sequence(conn: Connection, key: str, start: int, n: int) -> int:
    """Reserve ``n`` consecutive numbers in the caller's transaction (gap-free, like ``next_sequence``); returns the first."""
    from .service import next_sequence

    first = next_sequence(conn, key, start)
    if n > 1:
        conn.execute(pt.sequence.update().where(pt.sequence.c.key == key).values(value=pt.sequence.c.value + (n - 1)))
    return first


def allocate_ids(conn: Connection, table, n: int) -> list[int] | None:
    """``n`` new ids for ``table``, taken up front so the rows can be inserted without ``RETURNING``.

    PostgreSQL: ``n`` values from the id column's own sequence in one statement (what the inserts would have drawn).
    SQLite: the ids after the current largest; the write transaction (``BEGIN IMMEDIATE``) holds the database's
    write lock, so no other writer can take them, and they are the ids SQLite itself would assign (the id is the
    rowid, without AUTOINCREMENT). ``None`` on other databases: the caller inserts with ``RETURNING``.
    """
    dialect = conn.dialect.name
    if dialect == "postgresql":
        rows = conn.execute(sql_text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
                            {"t": table.fullname, "n": n})
        return sorted(r[0] for r in rows)
    if dialect == "sqlite":
        top: int = conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
        return list(range(top + 1, top + 1 + n))
    return None


def _do_creates(service, conn, catalog, entity, table, creates, results, events, actor, request_id) -> None:
    if not creates:
        return
    plain = [(i, v) for i, v, c in creates if not c]
    for f in entity.fields:
        if f.type == "sequence":
            need = [v for _, v in plain if v.get(f.name) in (None, "")]
            if need:
                n = reserve_sequence(conn, f"{entity.key}.{f.id}", int(f.opt("start", 1)), len(need))
                for k, v in enumerate(need):
                    v[f.name] = catalog.type_of(f).format(f, n + k)
    now = utcnow()
    workflow = catalog.workflow_of(entity)
    groups: dict[frozenset, list[tuple[int, dict]]] = defaultdict(list)
    for i, v in plain:
        row = dict(v, created_at=now, updated_at=now, created_by=actor.id, updated_by=actor.id, owner_id=actor.id,
                   org_unit_id=actor.org_unit_id, row_version=1)
        if workflow is not None:
            row["workflow_state"] = workflow.initial.name  # as RecordService._insert: a new record starts in the initial state
        groups[frozenset(row)].append((i, row))
    new_ids = []
    for group in groups.values():
        ids = allocate_ids(conn, table, len(group))
        try:
            with conn.begin_nested():
                if ids is None:
                    stmt = table.insert().returning(table.c.id, sort_by_parameter_order=True)
                    ids = [r[0] for r in conn.execute(stmt, [row for _, row in group])]
                else:  # ids known: COPY on PostgreSQL, executemany on SQLite (storage/bulk_insert.py)
                    insert_rows(conn, table, [dict(row, id=rid) for (_, row), rid in zip(group, ids)])
        except IntegrityError as exc:
            raise _integrity(entity, exc) from None
        for (i, _), rid in zip(group, ids):
            results[i].action, results[i].id = "created", rid
            new_ids.append(rid)
    tables = service.table_cache.tables(catalog)
    to_json = json_converters(catalog, entity)
    feeds_rollups = any(f.type == "rollup" for f in entity.fields) or entity.key in rollups_by_source(catalog)
    for i, v in plain:
        changes = {k: [None, x if x is None or k not in to_json else to_json[k](x)] for k, x in v.items()}  # = service._json
        if feeds_rollups:  # otherwise refresh_after_write has nothing to do; asked once per batch, not per record
            refresh_after_write(conn, catalog, tables, entity, results[i].id, changes)
        events.append((results[i].id, "create", changes))
    for i, v, c in creates:
        if c:  # child rows: the single-record path, which writes its own audit entry and event
            results[i].id = service._insert(conn, catalog, entity, v, c, actor, request_id)
            results[i].action = "created"
            new_ids.append(results[i].id)
    scope = service._scope(catalog, entity, table, actor)
    if scope and new_ids:
        visible = _present(conn, table.c.id, set(new_ids), *scope)
        if visible != set(new_ids):
            raise PermissionDenied(text("A new {entity} would be outside the records you may see, so nothing was created. "
                                        "Ask an administrator to widen your row scope.",
                                        "有新的{entity}将超出你可查看的记录范围，因此未创建。请联系管理员扩大你的数据范围。", entity=entity.label))


def _do_updates(service, conn, catalog, entity, table, updates, results, events, actor, request_id) -> None:
    from ..errors import StaleRecord

    for i, current, values, children in updates:
        if children:
            before = current["row_version"]
            after = service._update_row(conn, catalog, entity, current, values, children, actor, request_id)
            results[i].action, results[i].id = ("updated" if after != before else "unchanged"), current["id"]
            continue
        changed = {k: v for k, v in values.items() if _differs(current.get(k), v)}
        results[i].id = current["id"]
        if not changed:
            results[i].action = "unchanged"
            continue
        try:
            with conn.begin_nested():
                res = conn.execute(table.update().where(table.c.id == current["id"], table.c.row_version == current["row_version"])
                                   .values(**changed, row_version=current["row_version"] + 1, updated_at=utcnow(), updated_by=actor.id))
        except IntegrityError as exc:
            raise _integrity(entity, exc) from None
        if res.rowcount != 1:
            raise StaleRecord(text("Someone else changed this record at the same moment. Reload it and apply your change again.",
                                   "其他人在同一时刻修改了这条记录。请重新加载，再应用你的修改。"))
        results[i].action = "updated"
        changes = {k: [_json(catalog, entity, k, current.get(k)), _json(catalog, entity, k, v)] for k, v in changed.items()}
        refresh_after_write(conn, catalog, service.table_cache.tables(catalog), entity, current["id"], changes)
        events.append((current["id"], "update", changes))


def _write_events(service, conn, entity, events, actor, request_id) -> None:
    if not events:
        return
    record_events(conn, [{"category": "record", "action": action, "actor_id": actor.id, "entity": entity.key, "record_id": rid,
                          "changes": changes, "request_id": request_id} for rid, action, changes in events])
    now = utcnow()
    verbs = {"create": "created", "update": "updated"}
    insert_rows(conn, pt.outbox, [{"created_at": now, "topic": f"record.{verbs[a]}", "entity": entity.key, "record_id": rid,
                                       "payload": {"entity": entity.key, "id": rid, "changes": ch, "actor_id": actor.id}} for rid, a, ch in events])
    listeners = service.listeners.get(entity.key)
    if listeners:  # app hooks run inside the batch's transaction, per record, as for single writes
        from .service import RecordWritten

        tables = service.table_cache.tables(service.store.catalog())
        for rid, a, ch in events:
            for fn in listeners:
                fn(conn, RecordWritten(entity=entity.key, record_id=rid, verb=verbs[a], changes=ch, actor=actor, tables=tables,
                                       records=service))
