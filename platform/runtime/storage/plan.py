"""Schema plans: ``plan = diff(live database, desired definitions)``; applying is a separate step.

Every step says what it does, whether it is destructive or lossy, and how many
rows it affects. ``apply_plan`` refuses destructive/lossy steps unless confirmed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import Connection, Engine, Integer, Table, cast, column, func, inspect, not_, or_, select, text
from sqlalchemy import table as table_clause
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateTable

from ..errors import PlanRefused
from ..meta.catalog import Catalog
from ..meta.model import EntityDef, FieldDef
from . import platform_tables as pt
from .entity_tables import build_tables, entity_indexes, make_index


@dataclass
class Step:
    op: str                      # create_table, add_column, fill_rollup, rename_column, rename_table, change_type, drop_column, drop_table, create_index, drop_index, adopt_column
    table: str
    description: str
    destructive: bool = False
    lossy: bool = False
    affected_rows: int | None = None
    sql: str = ""
    # Bound by the planner; runs the step on a connection.
    run: Callable[[Connection], None] | None = field(default=None, repr=False)
    outside_transaction: bool = False
    column: str | None = None    # the column a column step works on
    blocked: str | None = None   # why the step cannot run until the data changes (no confirmation helps)
    touches: tuple[str, ...] = ()  # every column name the step refers to (storage.publish orders steps by them)

    def apply(self, conn: Connection) -> None:
        """Run the step; every step the planner emits has ``run`` bound."""
        if self.run is None:
            raise RuntimeError(f"step {self.op} on {self.table} was not bound to a run function")
        self.run(conn)

    @property
    def needs_confirmation(self) -> bool:
        return self.destructive or self.lossy

    def to_dict(self) -> dict:
        return {
            "op": self.op, "table": self.table, "description": self.description, "destructive": self.destructive,
            "lossy": self.lossy, "affected_rows": self.affected_rows, "sql": self.sql, "blocked": self.blocked,
        }


@dataclass
class Plan:
    steps: list[Step]

    @property
    def empty(self) -> bool:
        return not self.steps

    @property
    def needs_confirmation(self) -> list[Step]:
        return [s for s in self.steps if s.needs_confirmation]

    @property
    def blocked(self) -> list[Step]:
        return [s for s in self.steps if s.blocked]

    def to_dict(self) -> dict:
        return {"steps": [s.to_dict() for s in self.steps], "needs_confirmation": bool(self.needs_confirmation)}

    def render(self) -> str:
        if not self.steps:
            return "The database matches the definitions; nothing to do."
        lines = []
        for i, s in enumerate(self.steps, 1):
            flag = " [DESTRUCTIVE]" if s.destructive else (" [LOSSY]" if s.lossy else "")
            if s.blocked:
                flag = f" [BLOCKED: {s.blocked}]"
            rows = f" ({s.affected_rows} rows affected)" if s.affected_rows is not None and s.needs_confirmation else ""
            lines.append(f"{i:>3}. {s.description}{flag}{rows}")
        return "\n".join(lines)


def type_sig(col_type, dialect) -> str:
    return str(col_type.compile(dialect=dialect))


def _kind(sig: str) -> str:
    s = sig.upper()
    for prefix, kind in (("VARCHAR", "string"), ("TEXT", "text"), ("BIGINT", "integer"), ("INTEGER", "integer"),
                         ("NUMERIC", "numeric"), ("BOOLEAN", "boolean"), ("DATETIME", "datetime"), ("TIMESTAMP", "datetime"),
                         ("DATE", "date"), ("JSON", "json")):
        if s.startswith(prefix):
            return kind
    return s


def _length(sig: str) -> int | None:
    if "(" in sig and sig.upper().startswith("VARCHAR"):
        return int(sig[sig.index("(") + 1:sig.index(")")])
    return None


def _numeric_ps(sig: str) -> tuple[int, int] | None:
    if sig.upper().startswith("NUMERIC") and "(" in sig:
        p, s = sig[sig.index("(") + 1:sig.index(")")].split(",")
        return int(p), int(s)
    return None


def lossy_rows_predicate(col, old_sig: str, new_sig: str, dialect: str):
    """A predicate selecting the rows whose value would not survive the type change,
    or None when the change is lossless. ``False`` means 'every non-null value is lost'."""
    ok, nk = _kind(old_sig), _kind(new_sig)
    if nk in ("string",):
        n = _length(new_sig)
        if ok in ("string", "text", "integer", "numeric"):
            old_n = _length(old_sig)
            if ok == "string" and old_n is not None and n is not None and n >= old_n:
                return None
            return func.length(func.cast(col, _text_type())) > n
        return False
    if nk == "text":
        return None if ok in ("string", "text", "integer", "numeric") else False
    if nk == "integer":
        if ok == "integer":
            return None
        if ok == "numeric":
            return col != func.round(col, 0)
        if ok in ("string", "text"):
            return _not_matching(col, r"^-?[0-9]{1,18}$", dialect)
        return False
    if nk == "numeric":
        p, s = _numeric_ps(new_sig) or (18, 4)
        limit = 10 ** (p - s)
        if ok in ("integer", "numeric"):
            old = _numeric_ps(old_sig)
            if old and old[1] <= s and old[0] - old[1] <= p - s:
                return None
            return or_(func.abs(col) >= limit, col != func.round(col, s))
        if ok in ("string", "text"):
            return _not_matching(col, r"^-?[0-9]+(\.[0-9]+)?$", dialect)
        return False
    if nk == "date" and ok in ("string", "text"):
        return _not_matching(col, r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", dialect)
    if nk == ok:
        return None
    return False


def _text_type():
    from sqlalchemy import Text

    return Text()


def _not_matching(col, pattern: str, dialect: str):
    if dialect == "postgresql":
        return not_(col.op("~", is_comparison=True)(pattern))
    # SQLite has no REGEXP by default: compare with a round trip through the target type.
    if "0-9]{4}" in pattern:
        return func.date(col).is_(None) | (func.date(col) != col)
    if "\\." in pattern:
        return (func.trim(col, "0123456789.-") != "") | (func.trim(col) == "")
    return cast(cast(col, Integer), _text_type()) != col

def _run_sql(sql: str) -> Callable[[Connection], None]:
    """A step's ``run`` that executes one fixed statement."""
    def run(conn: Connection) -> None:
        conn.execute(text(sql))
    return run


class Planner:
    """Compares the desired catalog with the live database and the recorded applied state."""

    def __init__(self, engine: Engine, catalog: Catalog):
        self.engine = engine
        self.catalog = catalog
        self.dialect = engine.dialect

    def plan(self) -> Plan:
        md, tables = build_tables(self.catalog)
        with self.engine.connect() as conn:
            insp = inspect(conn)
            live_tables = set(insp.get_table_names())
            applied_entities = {r.entity_id: r for r in conn.execute(select(pt.applied_entity))}
            applied_fields: dict[str, dict[str, object]] = {}
            for r in conn.execute(select(pt.applied_field)):
                applied_fields.setdefault(r.entity_id, {})[r.field_id] = r
            steps: list[Step] = []
            desired_ids = set()
            renamed = {}  # entity key → the table it lives in before this plan renames it
            for key, table in tables.items():
                prev = applied_entities.get(self.catalog.entities[key].id)
                if prev is not None and prev.table_name != table.name and prev.table_name in live_tables:
                    renamed[key] = prev.table_name
            live = _LiveSchema.read(conn, insp, sorted({renamed.get(k, t.name) for k, t in tables.items()} & live_tables))
            for key, table in tables.items():
                entity = self.catalog.entities[key]
                desired_ids.add(entity.id)
                if key in renamed:
                    steps.append(self._rename_table(entity, renamed[key], table.name))
                live_name = renamed.get(key, table.name)
                if live_name not in live_tables:
                    steps.append(self._create_table(entity, table))
                    continue
                column_steps = self._diff_columns(conn, live, entity, table, live_name, applied_fields.get(entity.id, {}))
                dropped = {s.column for s in column_steps if s.op == "drop_column"}
                steps += column_steps
                steps += self._diff_indexes(conn, live, entity, table, live_name, dropped)
            for entity_id, prev in applied_entities.items():
                if entity_id not in desired_ids and prev.table_name in live_tables:
                    n: int = conn.execute(text(f'SELECT count(*) FROM "{prev.table_name}"')).scalar_one()
                    steps.append(self._drop_table(entity_id, prev.table_name, n))
        return Plan(steps + self._fill_rollups(steps, tables))

    # --- steps -------------------------------------------------------------------------
    def _create_table(self, entity: EntityDef, table: Table) -> Step:
        sql = str(CreateTable(table).compile(dialect=self.dialect)).strip()

        def run(conn: Connection):
            table.create(conn)
            self._record_entity(conn, entity)
            for f in entity.fields:
                col = table.c.get(f.name)
                if col is not None:
                    self._record_field(conn, entity, f, col)

        return Step("create_table", table.name, f"Create table {table.name} for {entity.key} ({len(table.c)} columns)", sql=sql, run=run)

    def _rename_table(self, entity: EntityDef, old: str, new: str) -> Step:
        def run(conn: Connection):
            conn.execute(text(f'ALTER TABLE "{old}" RENAME TO "{new}"'))
            self._record_entity(conn, entity)

        return Step("rename_table", old, f"Rename table {old} → {new} (entity {entity.key} renamed; data kept)", sql=f'ALTER TABLE "{old}" RENAME TO "{new}"', run=run)

    def _drop_table(self, entity_id: str, table_name: str, rows: int) -> Step:
        def run(conn: Connection):
            conn.execute(text(f'DROP TABLE "{table_name}"'))
            conn.execute(pt.applied_field.delete().where(pt.applied_field.c.entity_id == entity_id))
            conn.execute(pt.applied_entity.delete().where(pt.applied_entity.c.entity_id == entity_id))

        return Step("drop_table", table_name, f"Drop table {table_name} (its entity is no longer defined)", destructive=True,
                    affected_rows=rows, sql=f'DROP TABLE "{table_name}"', run=run)

    def _diff_columns(self, conn, live: "_LiveSchema", entity: EntityDef, table: Table, live_name: str, applied: dict) -> list[Step]:
        steps = []
        live_cols = set(live.columns[live_name])
        desired_field_ids = set()
        for f in entity.fields:
            col = table.c.get(f.name)
            if col is None:
                continue
            desired_field_ids.add(f.id)
            sig = type_sig(col.type, self.dialect)
            prev = applied.get(f.id)
            if prev is not None and prev.column_name != f.name and prev.column_name in live_cols:
                steps.append(self._rename_column(entity, live_name, prev.column_name, f, col))
                live_cols.add(f.name)
            elif f.name not in live_cols:
                steps.append(self._add_column(entity, live_name, f, col))
                continue
            if prev is None:
                steps.append(self._adopt_column(entity, live_name, f, col))
            elif prev.type_sig != sig:
                # A column renamed in the same plan still has its old name while rows are counted.
                steps.append(self._change_type(conn, entity, live_name, f, col, prev.type_sig, sig, counted_column=prev.column_name))
        for field_id, prev in applied.items():
            if field_id not in desired_field_ids and prev.column_name in live_cols:
                n = conn.execute(text(f'SELECT count(*) FROM "{live_name}" WHERE "{prev.column_name}" IS NOT NULL')).scalar_one()
                steps.append(self._drop_column(entity, live_name, prev.column_name, field_id, n))
        return steps

    def _add_column(self, entity, table_name, f: FieldDef, col) -> Step:
        ddl = f'ALTER TABLE "{table_name}" ADD COLUMN "{f.name}" {type_sig(col.type, self.dialect)}'

        def run(conn: Connection):
            from alembic.operations import Operations
            from alembic.runtime.migration import MigrationContext

            new_col = col._copy()
            Operations(MigrationContext.configure(conn)).add_column(table_name, new_col)
            self._record_field(conn, entity, f, col)

        return Step("add_column", table_name, f"Add column {table_name}.{f.name} ({f.type}, nullable, no table rewrite)", sql=ddl, run=run,
                    column=f.name, touches=(f.name,))

    def _fill_rollups(self, steps: list[Step], tables: dict[str, Table]) -> list[Step]:
        """A new rollup column on a table with rows is computed once, after every other step (its source may be new)."""
        out = []
        by_table = {t.name: key for key, t in tables.items()}
        for s in steps:
            entity = self.catalog.entities.get(by_table.get(s.table, ""))
            f = entity.field_map.get(s.column or "") if s.op == "add_column" and entity else None
            if f is None or f.type != "rollup":
                continue

            def run(conn: Connection, entity=entity, f=f):
                from ..records.rollups import recompute_field

                recompute_field(conn, self.catalog, tables, entity, f)

            out.append(Step("fill_rollup", s.table, f"Compute rollup {s.table}.{f.name} for existing rows", run=run, column=f.name))
        return out

    def _adopt_column(self, entity, table_name, f: FieldDef, col) -> Step:
        def run(conn: Connection):
            self._record_field(conn, entity, f, col)

        return Step("adopt_column", table_name, f"Record existing column {table_name}.{f.name} as field {f.id}", run=run,
                    touches=(f.name,))

    def _rename_column(self, entity, table_name, old: str, f: FieldDef, col) -> Step:
        sql = f'ALTER TABLE "{table_name}" RENAME COLUMN "{old}" TO "{f.name}"'

        def run(conn: Connection):
            conn.execute(text(sql))
            self._record_field(conn, entity, f, col)

        return Step("rename_column", table_name, f"Rename column {table_name}.{old} → {f.name} (data kept)", sql=sql, run=run,
                    touches=(old, f.name))

    def _change_type(self, conn, entity, table_name, f: FieldDef, col, old_sig: str, new_sig: str, counted_column: str | None = None) -> Step:
        live = Table(table_name, col.table.metadata.__class__(), autoload_with=conn)
        live_col = live.c[counted_column or f.name]
        pred = lossy_rows_predicate(live_col, old_sig, new_sig, self.dialect.name)
        if pred is None:
            n, lossy = 0, False
        elif pred is False:
            n = conn.execute(select(func.count()).select_from(live).where(live_col.is_not(None))).scalar_one()
            lossy = n > 0
        else:
            n = conn.execute(select(func.count()).select_from(live).where(live_col.is_not(None), pred)).scalar_one()
            lossy = n > 0
        dialect = self.dialect.name

        def run(conn: Connection):
            from alembic.operations import Operations
            from alembic.runtime.migration import MigrationContext

            target = Table(table_name, col.table.metadata.__class__(), autoload_with=conn)
            c = target.c[f.name]
            p = lossy_rows_predicate(c, old_sig, new_sig, dialect)
            if p is False:
                conn.execute(target.update().values({f.name: None}))
            elif p is not None:
                conn.execute(target.update().where(c.is_not(None), p).values({f.name: None}))
            ops = Operations(MigrationContext.configure(conn))
            if dialect == "postgresql":
                using = f'"{f.name}"::{new_sig}' if _kind(old_sig) != "json" else None
                ops.alter_column(table_name, f.name, type_=col.type, existing_nullable=True, postgresql_using=using)
            else:
                with ops.batch_alter_table(table_name, recreate="always") as batch:
                    batch.alter_column(f.name, type_=col.type, existing_nullable=True)
            self._record_field(conn, entity, f, col)

        what = f"{n} rows hold values that cannot be converted and will be cleared" if lossy else "all values convert"
        return Step("change_type", table_name, f"Change {table_name}.{f.name} from {old_sig} to {new_sig} ({what})",
                    lossy=lossy, affected_rows=n, sql=f'ALTER TABLE "{table_name}" ALTER COLUMN "{f.name}" TYPE {new_sig}', run=run,
                    touches=(f.name,))

    def _drop_column(self, entity, table_name, column: str, field_id: str, rows: int) -> Step:
        def run(conn: Connection):
            from alembic.operations import Operations
            from alembic.runtime.migration import MigrationContext

            ops = Operations(MigrationContext.configure(conn))
            if conn.dialect.name == "sqlite":
                for ix in inspect(conn).get_indexes(table_name):
                    if column in ix["column_names"] and ix["name"]:
                        ops.drop_index(ix["name"], table_name=table_name)
                with ops.batch_alter_table(table_name) as batch:
                    batch.drop_column(column)
            else:
                ops.drop_column(table_name, column)
            conn.execute(pt.applied_field.delete().where(pt.applied_field.c.entity_id == entity.id, pt.applied_field.c.field_id == field_id))

        return Step("drop_column", table_name, f"Drop column {table_name}.{column} (field removed from the definition)",
                    destructive=True, affected_rows=rows, sql=f'ALTER TABLE "{table_name}" DROP COLUMN "{column}"', run=run, column=column)

    def _diff_indexes(self, conn, schema: "_LiveSchema", entity: EntityDef, table: Table, live_name: str, dropped_columns: set) -> list[Step]:
        """Indexes to create and drop; those on a dropped column go with the column."""
        steps = []
        live = {ix["name"]: ix for ix in schema.indexes[live_name] if ix["name"] not in schema.invalid_indexes}
        live_cols = set(schema.columns[live_name])
        desired = {name: (cols, unique) for name, cols, unique in entity_indexes(entity, self.catalog)}
        for name, (cols, unique) in desired.items():
            if name not in live:
                step = self._create_index(live_name, table, name, cols, unique)
                if unique and set(cols) <= live_cols:
                    n = _duplicate_rows(conn, live_name, cols)
                    if n:
                        step.affected_rows = n
                        step.blocked = (f"{n} rows share a value of {', '.join(cols)}; make those values unique "
                                        f"(or remove the duplicates) before the unique index can be built")
                steps.append(step)
        for name, ix in live.items():
            if name.startswith(("ix_", "uq_")) and name not in desired and not dropped_columns & set(ix["column_names"]):
                steps.append(Step("drop_index", live_name, f"Drop index {name} on {live_name}", sql=f'DROP INDEX "{name}"',
                                  run=_run_sql(f'DROP INDEX "{name}"')))
        return steps

    def _create_index(self, table_name: str, table: Table, name: str, cols, unique: bool) -> Step:
        ix = make_index(table, name, tuple(cols), unique) if name not in {i.name for i in table.indexes} else next(i for i in table.indexes if i.name == name)
        concurrent = self.dialect.name == "postgresql"

        def run(conn: Connection):
            if concurrent:
                conn.execute(text("SET lock_timeout = '5s'"))
                ix.dialect_options["postgresql"]["concurrently"] = True
                # A failed CONCURRENTLY build leaves an invalid index behind; start from a clean slate.
                conn.execute(text(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"'))
            try:
                ix.create(conn)
            except DBAPIError as exc:
                if concurrent:
                    conn.execute(text(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"'))
                raise PlanRefused(f"Could not create index {name} on {table_name}: {exc.orig}".strip(),
                                  details={"steps": [{"op": "create_index", "table": table_name, "index": name}]}) from None

        kind = "unique index" if unique else "index"
        return Step("create_index", table_name, f"Create {kind} {name} on {table_name}({', '.join(cols)})" + (" CONCURRENTLY" if concurrent else ""),
                    run=run, outside_transaction=concurrent, touches=tuple(cols))

    # --- applied state ---------------------------------------------------------------
    def _record_entity(self, conn: Connection, entity: EntityDef) -> None:
        conn.execute(pt.applied_entity.delete().where(pt.applied_entity.c.entity_id == entity.id))
        conn.execute(pt.applied_entity.insert().values(entity_id=entity.id, entity_key=entity.key, table_name=entity.table_name))

    def _record_field(self, conn: Connection, entity: EntityDef, f: FieldDef, col) -> None:
        conn.execute(pt.applied_field.delete().where(pt.applied_field.c.entity_id == entity.id, pt.applied_field.c.field_id == f.id))
        conn.execute(pt.applied_field.insert().values(entity_id=entity.id, field_id=f.id, column_name=f.name, type_sig=type_sig(col.type, self.dialect)))


@dataclass(frozen=True)
class _LiveSchema:
    """The live columns and indexes of the tables a plan compares, reflected together: PostgreSQL answers
    for all tables in a few catalog queries instead of several per table."""

    columns: dict[str, frozenset[str]]
    indexes: dict[str, list[dict]]
    invalid_indexes: frozenset[str]

    @classmethod
    def read(cls, conn: Connection, insp, names: list[str]) -> "_LiveSchema":
        if not names:
            return cls({}, {}, frozenset())
        cols = insp.get_multi_columns(filter_names=names)
        ixs = insp.get_multi_indexes(filter_names=names)
        return cls(columns={name: frozenset(c["name"] for c in cols.get((None, name), ())) for name in names},
                   indexes={name: list(ixs.get((None, name), ())) for name in names},
                   invalid_indexes=frozenset(_invalid_indexes(conn)))


def _invalid_indexes(conn: Connection) -> set[str]:
    """PostgreSQL keeps the remains of a failed CREATE INDEX CONCURRENTLY as an invalid index."""
    if conn.dialect.name != "postgresql":
        return set()
    return set(conn.execute(text(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid"
    )).scalars())


def _duplicate_rows(conn: Connection, table_name: str, cols) -> int:
    """Live rows whose values in ``cols`` are shared with another live row (a unique index would fail)."""
    t = table_clause(table_name, *[column(c) for c in cols], column("deleted_at"))
    keys = [t.c[c] for c in cols]
    groups = (select(func.count().label("n")).select_from(t)
              .where(t.c.deleted_at.is_(None), *[k.is_not(None) for k in keys])
              .group_by(*keys).having(func.count() > 1).subquery())
    return int(conn.execute(select(func.coalesce(func.sum(groups.c.n), 0))).scalar_one())


def refuse_unsafe(plan: Plan, *, confirm: bool) -> None:
    """Raise ``PlanRefused`` for blocked steps, and for destructive/lossy ones unless confirmed."""
    if plan.blocked:
        raise PlanRefused(
            "The plan cannot be applied until the data changes:\n" + "\n".join(f"- {s.description}: {s.blocked}" for s in plan.blocked),
            details={"steps": [s.to_dict() for s in plan.blocked]},
        )
    risky = plan.needs_confirmation
    if risky and not confirm:
        raise PlanRefused(
            "The plan has steps that delete or change existing data; review them and confirm to apply:\n" +
            "\n".join(f"- {s.description} ({s.affected_rows} rows)" for s in risky),
            details={"steps": [s.to_dict() for s in risky]},
        )


def apply_plan(engine: Engine, plan: Plan, *, confirm: bool = False, progress: Callable[[int, int, Step], None] | None = None) -> int:
    """Run the plan's steps in order, each in its own transaction. Returns the number applied."""
    refuse_unsafe(plan, confirm=confirm)
    for i, step in enumerate(plan.steps, 1):
        if progress:
            progress(i, len(plan.steps), step)
        if step.outside_transaction:
            with engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                step.apply(conn)
        else:
            from ..db import write_transaction

            with write_transaction(engine) as conn:
                step.apply(conn)
    return len(plan.steps)
