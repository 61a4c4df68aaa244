"""QueryService: the one read path for lists, detail pages, the API, exports and lookups.

It turns (entity, filter tree, sort, search, fields, cursor) into one SQLAlchemy Core
select, applies the policy point's row filter and readable fields, pages by keyset,
and loads related labels in one query per related table.
"""
from __future__ import annotations

import builtins

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal

from marshmallow import ValidationError
from sqlalchemy import Engine, FromClause, String, and_, false, func, or_, select, tuple_, union_all
from sqlalchemy.sql import ColumnElement

from ..actor import Actor
from ..errors import BadQuery, PermissionDenied, RecordNotFound
from ..fields import FilterContext
from ..fields.text import _like
from ..i18n_text import Text, text
from ..meta.catalog import Catalog
from ..meta.model import EntityDef, FieldDef
from ..meta.store import MetadataStore
from ..permissions.masking import mask_value
from ..policy import Policy
from ..records.service import TableCache, record_id_or_none, utcnow
from ..storage import fab_tables, platform_tables as pt
from .cursor import BAD_CURSOR, decode_cursor, encode_cursor
from .computed import computed_view
from .filters import SYSTEM_FIELDS, compile_filter

MAX_PAGE = 200
COUNT_CAP = 1000
SYSTEM_OUT = ("id", "row_version", "created_at", "updated_at", "created_by", "updated_by", "owner_id", "org_unit_id", "deleted_at", "deleted_by", "workflow_state")
NOT_NULL_SORT = {"id", "created_at", "updated_at"}


@dataclass
class Page:
    rows: list[dict]
    next_cursor: str | None
    prev_cursor: str | None
    total: int | None
    total_exact: bool
    sort: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def total_label(self) -> str:
        if self.total is None:
            return ""
        return f"{self.total}" if self.total_exact else f"{self.total}+"


class QueryService:
    def __init__(self, engine: Engine, store: MetadataStore, policy: Policy, tables: TableCache, *, timezone: str = "Asia/Shanghai",
                 clock: Callable[[], dt.datetime] = utcnow):
        self.engine = engine
        self.store = store
        self.policy = policy
        self.table_cache = tables
        self.timezone = timezone
        self.clock = clock  # "now" for relative date filters (today, last 7 days, …)

    def catalog(self) -> Catalog:
        return self.store.catalog()

    # --- lists ------------------------------------------------------------------------
    def list(self, entity_key: str, actor: Actor, *, filter: Any = None, sort: Iterable[str] | None = None, search: str | None = None,
             fields: Iterable[str] | None = None, cursor: str | None = None, limit: int = 25, deleted: bool | Literal["include"] = False,
             count: str = "capped", labels: bool = True) -> Page:
        catalog = self.catalog()
        entity = catalog.entity(entity_key)
        self.policy.check(actor, entity, "read")
        view = computed_view(catalog, entity, self.table_cache.tables(catalog), self.timezone)
        table = view.table
        readable = self.policy.readable_fields(actor, entity)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise BadQuery(text("limit must be between 1 and {n}.", "每页条数（limit）须在 1 到 {n} 之间。", n=MAX_PAGE))
        if count not in ("capped", "exact", "none"):
            raise BadQuery(text("count must be 'capped', 'exact' or 'none'.", "count 只能是 capped、exact 或 none。"))
        out_fields = self._out_fields(catalog, entity, readable, fields)
        # Masked fields the actor may not unmask cannot be filtered or sorted on: that would reveal them bit by bit.
        comparable = view.comparable(self.policy.comparable_fields(actor, entity))
        where = self._where(catalog, entity, table, actor, comparable, filter, search, deleted, readable=readable)
        sort_keys = self._sort_keys(catalog, entity, comparable, sort)
        sig = ",".join(("-" if d else "") + n for n, d in sort_keys)
        direction = "after"
        branches: list[ColumnElement] = []
        if cursor:
            values, direction = decode_cursor(cursor, sig)
            branches = self._keyset(catalog, entity, table, sort_keys, values, direction)
        cols = [table.c[c] for c in SYSTEM_OUT] + [table.c[f.name] for f in out_fields]
        # Sort columns are always selected: the cursor is built from them even when the caller did not ask for them.
        selected = {c.name for c in cols}
        cols += [table.c[n] for n, _ in sort_keys if n not in selected]
        cols += view.extra_columns(cols)
        reverse = direction == "before"
        if len(branches) <= 1:
            q = select(*cols).where(*where, *branches).order_by(*self._order(table, sort_keys, reverse=reverse)).limit(limit + 1)
        else:
            # "Rows after the cursor" is an OR (e.g. date < d, or date = d and id < i, or date IS NULL), which no
            # index range can serve. Each alternative is its own index-ordered, limited select; the union holds at
            # most (limit + 1) rows per alternative, and only those are sorted.
            # Only the id and sort columns travel through the union (cheap to build and to sort); the page's rows are
            # then joined by id.
            key_cols = [table.c[n] for n, _ in sort_keys]
            parts = [select(*key_cols).where(*where, b).order_by(*self._order(table, sort_keys, reverse=reverse)).limit(limit + 1).subquery()
                     for b in branches]
            merged = union_all(*[select(*p.c) for p in parts]).subquery("page")
            q = (select(*cols).select_from(table.join(merged, table.c.id == merged.c.id))
                 .order_by(*self._order(merged, sort_keys, reverse=reverse)).limit(limit + 1))
        with self.engine.connect() as conn:
            raw = conn.execute(q).mappings().all()
            has_more = len(raw) > limit
            raw = list(raw[:limit])
            if direction == "before":
                raw.reverse()
            total, exact = self._count(conn, table, where, count)
            rows = self._rows(catalog, entity, view, raw, out_fields, actor)
            if labels:
                self._attach_labels(conn, catalog, out_fields, rows, actor.locale, actor)
        next_cursor = prev_cursor = None
        if rows:
            last, first = raw[-1], raw[0]
            if direction == "after" and has_more or direction == "before":
                next_cursor = encode_cursor(sig, self._cursor_values(catalog, entity, last, sort_keys), "after")
            if cursor and (direction == "after" or has_more):
                prev_cursor = encode_cursor(sig, self._cursor_values(catalog, entity, first, sort_keys), "before")
        return Page(rows=rows, next_cursor=next_cursor, prev_cursor=prev_cursor, total=total, total_exact=exact, sort=sort_keys)

    def check_filter(self, entity_key: str, actor: Actor, *, filter: Any, sort: Iterable[str] | str | None = None) -> None:
        """Compile ``filter`` and ``sort`` exactly as ``list`` would for ``actor``, running nothing: BadQuery if refused.

        Used to validate a filter before it is stored (saved filters), so what was stored will run."""
        catalog = self.catalog()
        entity = catalog.entity(entity_key)
        self.policy.check(actor, entity, "read")
        view = computed_view(catalog, entity, self.table_cache.tables(catalog), self.timezone)
        comparable = view.comparable(self.policy.comparable_fields(actor, entity))
        ctx = FilterContext(self.engine.dialect.name, self.timezone, self.clock())
        compile_filter(catalog, entity, view.table, filter, ctx, comparable)
        if sort:
            self._sort_keys(catalog, entity, comparable, sort)

    def get(self, entity_key: str, record_id: Any, actor: Actor, *, deleted: bool = False) -> dict:
        """One record with its child rows and related labels; missing or unreadable → RecordNotFound."""
        catalog = self.catalog()
        entity = catalog.entity(entity_key)
        self.policy.check(actor, entity, "read")
        if record_id_or_none(record_id) is None:
            raise RecordNotFound(text("{entity} '{id}' does not exist.", "{entity}“{id}”不存在。", entity=entity.label, id=record_id))
        record_id = record_id_or_none(record_id)
        tables = self.table_cache.tables(catalog)
        view = computed_view(catalog, entity, tables, self.timezone)
        table = view.table
        readable = self.policy.readable_fields(actor, entity)
        out_fields = self._out_fields(catalog, entity, readable, None)
        where = [table.c.id == record_id]
        if not deleted:
            where.append(table.c.deleted_at.is_(None))
        row_filter = self.policy.row_filter(actor, entity, table, catalog)
        if row_filter is not None:
            where.append(row_filter)
        cols = [table.c[c] for c in SYSTEM_OUT] + [table.c[f.name] for f in out_fields]
        cols += view.extra_columns(cols)
        with self.engine.connect() as conn:
            r = conn.execute(select(*cols).where(*where)).mappings().first()
            if r is None:
                raise RecordNotFound(text("{entity} #{id} does not exist or was deleted.", "{entity} #{id} 不存在或已被删除。", entity=entity.label, id=record_id))
            row = self._rows(catalog, entity, view, [r], out_fields, actor)[0]
            self._attach_labels(conn, catalog, out_fields, [row], actor.locale, actor)
            for f, child in catalog.children_of(entity):
                if f.name not in readable:
                    continue
                child_view = computed_view(catalog, child, tables, self.timezone)
                ct = child_view.table
                child_fields = self._out_fields(catalog, child, self.policy.readable_fields(actor, child), None)
                ccols = [ct.c[c] for c in SYSTEM_OUT] + [ct.c[x.name] for x in child_fields]
                crow = conn.execute(select(*ccols, *child_view.extra_columns(ccols))
                                    .where(ct.c.parent_id == record_id).order_by(ct.c.sort_order, ct.c.id)).mappings().all()
                rows = self._rows(catalog, child, child_view, crow, child_fields, actor)
                self._attach_labels(conn, catalog, child_fields, rows, actor.locale, actor)
                row[f.name] = rows
        return row

    def history(self, entity_key: str, record_id: int, actor: Actor, limit: int = 100) -> builtins.list[dict]:
        """The audit timeline of one record, newest first, with actor names."""
        catalog = self.catalog()
        entity = catalog.entity(entity_key)
        self.policy.check(actor, entity, "read")
        readable = set(self.policy.readable_fields(actor, entity))
        if record_id_or_none(record_id) is None:
            return []
        table = self.table_cache.tables(catalog)[entity.key]
        row_filter = self.policy.row_filter(actor, entity, table, catalog)
        with self.engine.connect() as conn:
            if row_filter is not None and conn.execute(select(table.c.id).where(table.c.id == record_id, row_filter)).first() is None:
                return []  # a record outside the actor's rows has no timeline for them
            rows = conn.execute(select(pt.audit).where(pt.audit.c.entity == entity.key, pt.audit.c.record_id == record_id)
                                .order_by(pt.audit.c.id.desc()).limit(limit)).mappings().all()
            names = self._user_names(conn, {r["actor_id"] for r in rows if r["actor_id"]})
        out = []
        for r in rows:
            changes = self._visible_changes(catalog, entity, r["changes"] or {}, readable, actor)
            out.append({"at": r["at"], "action": r["action"], "actor_id": r["actor_id"], "actor": names.get(r["actor_id"], "system"), "changes": changes})
        return out

    def options(self, entity_key: str, actor: Actor, search: str | None = None, limit: int = 20) -> builtins.list[tuple[int, str]]:
        """(id, title) pairs for pickers and autocomplete, through the same list path."""
        catalog = self.catalog()
        entity = catalog.entity(entity_key)
        title = [entity.title_field] if entity.title_field in self.policy.readable_fields(actor, entity) else []
        page = self.list(entity_key, actor, search=search, fields=title, limit=limit, count="none",
                         sort=[entity.title_field] if catalog.type_of(entity.field(entity.title_field)).sortable
                         and entity.title_field in self.policy.comparable_fields(actor, entity) else None, labels=False)
        return [(r["id"], _title(catalog, entity, r, actor.locale)) for r in page.rows]

    def unmask(self, entity_key: str, record_id: Any, field_name: str, actor: Actor, *, request_id: str | None = None) -> Any:
        """The real value of one masked field, for an actor allowed to unmask it; every call is audited."""
        from ..audit import record_event
        from ..db import write_transaction

        catalog = self.catalog()
        entity = catalog.entity(entity_key)
        self.policy.check(actor, entity, "read")
        f = entity.field_map.get(field_name)
        if f is None or field_name not in self.policy.masks(actor, entity) or field_name not in self.policy.readable_fields(actor, entity):
            raise BadQuery(text("'{name}' is not a masked field of {entity} that you can read.", "“{name}”不是{entity}中你可查看的脱敏字段。",
                                name=field_name, entity=Text(entity.key, entity.label.zh)))
        if field_name not in self.policy.unmaskable_fields(actor, entity):
            raise PermissionDenied(text("You may not see {field} ({field_zh}) unmasked. Ask an administrator for the 'may unmask' right on this field.",
                                        "你无权查看{field}的完整内容。请联系管理员为此字段开通“可查看明文”权限。", field=f.label, field_zh=f.label.zh))
        rid = record_id_or_none(record_id)
        table = self.table_cache.tables(catalog)[entity.key]
        where = [table.c.id == rid, table.c.deleted_at.is_(None)]
        row_filter = self.policy.row_filter(actor, entity, table, catalog)
        if row_filter is not None:
            where.append(row_filter)
        with write_transaction(self.engine) as conn:
            r = conn.execute(select(table.c[field_name]).where(*where)).first() if rid is not None else None
            if r is None:
                raise RecordNotFound(text("{entity} #{id} does not exist or was deleted.", "{entity} #{id} 不存在或已被删除。", entity=entity.label, id=record_id))
            # The event names the field, never the value.
            record_event(conn, category="unmask", action="unmask", actor_id=actor.id, entity=entity.key, record_id=rid,
                         subject=field_name, changes={"field": field_name}, request_id=request_id)
        return catalog.type_of(f).from_db(f, r[0])

    def aggregate(self, entity_key: str, actor: Actor, *, groups=(), measures=(), filter: Any = None, sort=(), limit: int | None = None,
                  periods=(), keys_equal=()):
        """One GROUP BY select under the actor's row scope and field rules (see ``query.aggregate``)."""
        from .aggregate import run_aggregate

        return run_aggregate(self, actor, entity_key, list(groups), list(measures), filter=filter, sort=sort, limit=limit,
                             periods=periods, keys_equal=keys_equal)

    # --- building blocks --------------------------------------------------------------------
    def _out_fields(self, catalog, entity, readable, fields) -> builtins.list[FieldDef]:
        stored = [f for f in entity.fields if (catalog.type_of(f).stored or catalog.type_of(f).computed) and f.name in readable]
        if fields is None:
            return stored
        wanted = list(fields)
        by_name = {f.name: f for f in stored}
        unknown = [n for n in wanted if n not in by_name and n not in SYSTEM_OUT]
        if unknown:
            raise BadQuery(text("Unknown or unreadable fields: {names}.", "字段不存在或你无权读取：{names}。", names=", ".join(map(str, unknown))))
        return [by_name[n] for n in wanted if n in by_name]

    def _where(self, catalog, entity, table, actor, comparable, tree, search, deleted, readable=None) -> builtins.list[ColumnElement]:
        """``comparable``: fields the actor may filter on; ``readable`` adds masked ones, which search matches only exactly."""
        readable = comparable if readable is None else readable
        # deleted: False → live rows, True → the recycle bin, "include" → both (sync tombstones)
        conds: list[ColumnElement] = [] if deleted == "include" else [table.c.deleted_at.is_not(None) if deleted else table.c.deleted_at.is_(None)]
        row_filter = self.policy.row_filter(actor, entity, table, catalog)
        if row_filter is not None:
            conds.append(row_filter)
        if tree:
            ctx = FilterContext(self.engine.dialect.name, self.timezone, self.clock())
            conds.append(compile_filter(catalog, entity, table, tree, ctx, comparable))
        if search is not None and search.strip():
            terms = search.strip().split()[:5]
            cols = [table.c[n] for n in entity.search_fields if n in comparable]
            exact = [table.c[n] for n in entity.search_fields if n in readable and n not in comparable]
            if not cols and not exact and entity.title_field in comparable:
                cols = [table.c[entity.title_field]]
            for term in terms:
                if len(term) > 100:
                    raise BadQuery(text("Search terms are at most 100 characters.", "每个搜索词最多 100 个字符。"))
                if "\x00" in term:
                    raise BadQuery(text("Search text cannot contain the NUL character (\\u0000).", "搜索内容不能包含 NUL 字符（\\u0000）。"))
                conds.append(or_(false(), *[_like(c, term, self.engine.dialect.name) for c in cols], *[c == term for c in exact]))
        return conds

    def _sort_keys(self, catalog, entity, readable, sort) -> builtins.list[tuple[str, bool]]:
        if sort is None or (isinstance(sort, (list, tuple)) and not sort):
            view = catalog.view(entity)
            keys = [(s.field, s.descending) for s in view.default_sort if s.field in NOT_NULL_SORT or s.field in readable] or [("created_at", True)]
        else:
            if isinstance(sort, str):
                sort = [s for s in sort.split(",") if s]
            keys = []
            for s in list(sort)[:3]:
                if not isinstance(s, str) or not s.strip("-"):
                    raise BadQuery(text("Sort by a field name, or -name for descending.", "请按字段名排序；降序时在字段名前加 -。"))
                name, desc = (s[1:], True) if s.startswith("-") else (s, False)
                if name in NOT_NULL_SORT:
                    keys.append((name, desc))
                    continue
                f = entity.field_map.get(name)
                if f is None or name not in readable or not (catalog.type_of(f).stored or catalog.type_of(f).computed):
                    raise BadQuery(text("Cannot sort by '{name}': {entity} has no such field you can read.", "不能按“{name}”排序：{entity}没有这个字段，或你无权读取。",
                                        name=name, entity=Text(entity.key, entity.label.zh)))
                if not catalog.type_of(f).sortable:
                    raise BadQuery(text("Cannot sort by '{field}': {type} fields are not sortable.", "不能按“{field}”排序：{type}字段不支持排序。",
                                        field=Text(name, f.label.zh), type=Text(f.type, catalog.type_of(f).label.zh)))
                keys.append((name, desc))
        keys = [k for k in keys if k[0] != "id"] + [("id", keys[-1][1] if keys else True)]
        return keys

    @staticmethod
    def _order(table: FromClause, keys, reverse: bool):
        """NULLs sort as the smallest value: first ascending, last descending (SOQL's default). It is
        SQLite's native order, and PostgreSQL's sort indexes are built ``NULLS FIRST`` to match
        (storage.entity_tables.make_index), so one index serves both directions on both databases."""
        out = []
        for name, desc in keys:
            col = table.c[name]
            d = desc != reverse
            expr = col.desc() if d else col.asc()
            if name not in NOT_NULL_SORT:
                expr = expr.nulls_last() if d else expr.nulls_first()
            out.append(expr)
        return out

    def _keyset(self, catalog, entity, table, keys, values, direction) -> builtins.list[ColumnElement]:
        """The rows after (or before) the cursor, as alternatives to OR together: each one a conjunction
        an index can serve (so the caller can run them as separate index-ordered selects)."""
        if len(values) != len(keys):
            raise BadQuery(BAD_CURSOR)
        vals = [self._coerce_cursor(catalog, entity, name, v) for (name, _), v in zip(keys, values)]
        before = direction == "before"
        if all(n in NOT_NULL_SORT for n, _ in keys) and len({d for _, d in keys}) == 1:
            desc = keys[0][1] != before
            tup, tv = tuple_(*[table.c[n] for n, _ in keys]), tuple_(*vals)
            return [tup < tv if desc else tup > tv]
        branches = []
        for i, (name, desc) in enumerate(keys):
            eqs = [(table.c[n].is_(None) if v is None else table.c[n] == v) for (n, _), v in zip(keys[:i], vals[:i])]
            col, v = table.c[name], vals[i]
            nullable = name not in NOT_NULL_SORT
            walking_down = desc != before  # rows still to come have smaller values; NULLs (smallest) come last
            if v is None:
                steps = [] if walking_down else [col.is_not(None)]
            elif walking_down:
                steps = [col < v, col.is_(None)] if nullable else [col < v]
            else:
                steps = [col > v]
            branches += [and_(*eqs, step) if eqs else step for step in steps]
        return branches or [false()]

    def _coerce_cursor(self, catalog, entity, name, value):
        if value is None:
            return None
        f = SYSTEM_FIELDS.get(name) or entity.field_map.get(name)
        try:
            if name == "id":
                if record_id_or_none(value) is None:
                    raise ValueError(value)
                return record_id_or_none(value)
            ft = catalog.type_of(f)
            # A cursor holds a value read from the column, which need not pass today's input rules
            # (a pattern, range or option added later): convert it, but do not validate it again.
            if isinstance(ft.sql_type(f), String):
                if not isinstance(value, str) or len(value) > 4000 or "\x00" in value:
                    raise ValueError(value)
                return value
            converted = ft.marshmallow_field(f)._deserialize(value, None, None)
            if converted is None:
                raise ValueError(value)
            return converted
        except (ValueError, TypeError, OverflowError, ValidationError):
            raise BadQuery(BAD_CURSOR) from None

    def _cursor_values(self, catalog, entity, row, keys) -> builtins.list:
        """The sort values of a fetched (raw) row, as JSON."""
        out = []
        for name, _ in keys:
            f = SYSTEM_FIELDS.get(name) or entity.field_map.get(name)
            v = catalog.type_of(f).from_db(f, row[name])
            out.append(None if v is None else catalog.type_of(f).to_json(f, v))
        return out

    def _count(self, conn, table, where, mode) -> tuple[int | None, bool]:
        if mode == "none":
            return None, False
        if mode == "exact":
            return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one(), True
        sub = select(table.c.id).where(*where).limit(COUNT_CAP + 1).subquery()
        n = conn.execute(select(func.count()).select_from(sub)).scalar_one()
        return (COUNT_CAP, False) if n > COUNT_CAP else (n, True)

    def _rows(self, catalog, entity, view, raw, out_fields, actor: Actor) -> builtins.list[dict]:
        """Fetched rows as ``actor`` sees them: values converted, Python formulas filled in, then masked (after the
        formulas, so a masked formula is masked too)."""
        rows = []
        for r in raw:
            row = {c: r[c] for c in SYSTEM_OUT}
            for f in out_fields:
                row[f.name] = catalog.type_of(f).from_db(f, r[f.name])
            row["_labels"] = {}
            rows.append(row)
        view.fill(rows, raw)
        self.policy.mask(actor, entity, *rows)
        return rows

    def _attach_labels(self, conn, catalog: Catalog, out_fields, rows: builtins.list[dict], locale: str, actor: Actor) -> None:
        """One query per related table for the whole page, never one per row.

        A linked record's title shows only when the actor may read that entity and its title field (masked if the
        actor sees it masked)."""
        if not rows:
            return
        tables = self.table_cache.tables(catalog)
        wanted: dict[tuple[str, str], set] = {}
        for f in out_fields:
            if f.type in ("link", "user", "org_unit"):
                target = f.opt("target") if f.type == "link" else f.type
                wanted.setdefault((target, f.type), set()).update(r[f.name] for r in rows if r.get(f.name) is not None)
        wanted.setdefault(("user", "user"), set()).update(r[c] for r in rows for c in ("created_by", "updated_by", "owner_id") if r.get(c))
        resolved: dict[str, dict] = {}
        for (target, kind), ids in wanted.items():
            if not ids:
                continue
            if kind == "link":
                te = catalog.entities[target]
                tt = tables[te.key]
                tf = te.field(te.title_field)
                if not self._title_visible(actor, te):
                    continue
                res = conn.execute(select(tt.c.id, tt.c[te.title_field]).where(tt.c.id.in_(ids))).all()
                titles = [{"id": i, tf.name: catalog.type_of(tf).from_db(tf, v)} for i, v in res]
                self.policy.mask(actor, te, *titles)
                resolved[target] = {t["id"]: catalog.type_of(tf).display_text(tf, t[tf.name], locale) for t in titles}
            elif kind == "user":
                resolved["user"] = self._user_names(conn, ids)
            else:
                resolved["org_unit"] = dict(conn.execute(select(pt.org_unit.c.id, pt.org_unit.c.name).where(pt.org_unit.c.id.in_(ids))).all())
        for r in rows:
            labels = r["_labels"]
            for f in out_fields:
                if f.type in ("link", "user", "org_unit") and r.get(f.name) is not None:
                    target = f.opt("target") if f.type == "link" else f.type
                    labels[f.name] = resolved.get(target, {}).get(r[f.name], f"#{r[f.name]}")
            for c in ("created_by", "updated_by", "owner_id"):
                if r.get(c):
                    labels[c] = resolved.get("user", {}).get(r[c], f"#{r[c]}")

    def _title_visible(self, actor: Actor, target: EntityDef) -> bool:
        return self.policy.allows(actor, target, "read") and target.title_field in self.policy.readable_fields(actor, target)

    def visible_changes(self, entity_key: str, changes: dict, actor: Actor) -> dict:
        """A change set (audit entry, outbox event) as ``actor`` may see it: unreadable fields absent, masked ones masked."""
        catalog = self.catalog()
        entity = catalog.entity(entity_key)
        return self._visible_changes(catalog, entity, changes or {}, set(self.policy.readable_fields(actor, entity)), actor)

    def _visible_changes(self, catalog, entity, changes: dict, readable, actor) -> dict:
        """An audit entry's changes without unreadable fields, the fields ``actor`` sees masked masked (child rows likewise)."""
        masked = self.policy.masks(actor, entity)
        out: dict[str, Any] = {}
        for k, v in changes.items():
            if k not in readable:
                continue
            f = entity.field_map.get(k)
            if f is not None and f.type == "child_table" and isinstance(v, dict):
                child = catalog.entities.get(f.opt("entity"))
                out[k] = self._visible_child_changes(child, v, actor) if child is not None else {}
            elif k in masked and isinstance(v, list):
                out[k] = [mask_value(masked[k], x) for x in v]
            else:
                out[k] = v
        return out

    def _visible_child_changes(self, child, change: dict, actor) -> dict:
        readable = set(self.policy.readable_fields(actor, child)) | {"id"}
        masked = self.policy.masks(actor, child)

        def row(values: dict) -> dict:
            return {k: (mask_value(masked[k], v) if k in masked else v) for k, v in values.items() if k in readable}

        def diff(values: dict) -> dict:
            return {k: ([mask_value(masked[k], x) for x in v] if k in masked and isinstance(v, list) else v)
                    for k, v in values.items() if k in readable}

        return {"added": [row(r) for r in change.get("added", []) if isinstance(r, dict)],
                "changed": {rid: diff(d) for rid, d in (change.get("changed") or {}).items() if isinstance(d, dict)},
                "removed": list(change.get("removed", []))}

    def _user_names(self, conn, ids) -> dict:
        if not ids:
            return {}
        ab = fab_tables.ab_user
        return dict(conn.execute(select(ab.c.id, ab.c.username).where(ab.c.id.in_(ids))).all())


def _title(catalog: Catalog, entity: EntityDef, row: dict, locale: str) -> str:
    f = entity.field(entity.title_field)
    return catalog.type_of(f).display_text(f, row.get(f.name), locale) or f"#{row['id']}"
