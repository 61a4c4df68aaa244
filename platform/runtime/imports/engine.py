"""The import engine: a file, a mapping and a mode in; records through ``RecordService.write_many`` out.

A run is a row in ``crmkit_import_run``. Rows are read as a stream and written in batches; each batch commits
its records, its error rows and the run's checkpoint (the last row number it covered) in ONE transaction, so
after a crash a re-run continues right after the checkpoint: nothing is written twice and nothing is skipped.
Rows that cannot be imported are kept with their original cells in ``crmkit_import_error``, so no row is lost:
every data row is created, updated, skipped (with a reason) or reported as an error.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import Engine, select

from ..actor import Actor
from ..db import inserted_id
from ..errors import CrmkitError, ValidationFailed
from ..i18n_text import Text, text
from ..records.batch import ItemResult
from .convert import CellParser, LinkResolver, cell_text, cell_value, uses_base_parsing
from .mapping import check_mapping
from .reader import TableSource, cells_as_text, open_table
from .tables import import_error, import_run

MODES = ("insert", "update", "upsert")
DEFAULT_BATCH = 1000
MAX_BATCH = 5000
DRY_RUN_ERROR_LIMIT = 1000
TERMINAL = ("succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "cancelled")  # a failed run (a lost connection, a full disk) can be run again from its checkpoint


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _msg(m: Any) -> dict:
    return {"en": m.en, "zh": m.zh} if isinstance(m, Text) else {"en": str(m), "zh": str(m)}


@dataclass
class RowProblem:
    row: int
    kind: str  # "error" | "skip"
    messages: list[dict]  # {"column": header or field, "message": {"en","zh"}}
    cells: list[str]


@dataclass
class Summary:
    run_id: int | None
    status: str
    total: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: int = 0
    checkpoint: int = 0
    checked: int = 0  # data rows looked at by this call (a limited dry run checks fewer than ``total``)
    problems: list[RowProblem] = field(default_factory=list)  # dry run: the first DRY_RUN_ERROR_LIMIT

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "status": self.status, "total": self.total, "created": self.created, "updated": self.updated,
                "skipped": self.skipped, "errors": self.errors, "checkpoint": self.checkpoint}


class Cancelled(Exception):
    pass


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class ImportEngine:
    """Creates, runs, resumes and cancels import runs. ``services`` is the composition root's ``Services``."""

    def __init__(self, services):
        self.services = services
        self.engine: Engine = services.engine

    # --- runs ------------------------------------------------------------------------
    def create_run(self, path: str | Path, entity_key: str, actor: Actor, *, mapping: dict | None = None, mode: str = "insert",
                   key: str | None = None, sheet: str | None = None, batch_size: int = DEFAULT_BATCH, file_name: str | None = None) -> int:
        """Check the options against the file and the entity, and record a pending run; returns its id."""
        path = Path(path)
        catalog = self.services.store.catalog()
        entity = catalog.entity(entity_key)
        self.services.policy.check(actor, entity, "import")
        source = open_table(path, sheet=sheet, file_name=file_name)
        if mapping is None:
            from .mapping import auto_map

            mapping = auto_map(source.headers, catalog, entity)
        mapping = check_mapping(mapping, source.headers, catalog, entity)
        self._check_options(catalog, entity, mapping, mode, key)
        batch_size = max(1, min(int(batch_size), MAX_BATCH))
        with self.engine.begin() as conn:
            return inserted_id(conn.execute(import_run.insert().values(
                entity=entity.key, file_path=str(path), file_name=(file_name or path.name)[:255], file_sha256=file_sha256(path),
                sheet=source.sheet, mapping=mapping, mode=mode, key_field=key or None, batch_size=batch_size, status="pending",
                checkpoint=0, created_by=actor.id, created_at=now(), updated_at=now(),
            )))

    def create_draft(self, path: str | Path, entity_key: str, actor: Actor, *, file_name: str, sheet: str | None = None) -> int:
        """A run the wizard is still setting up (status ``draft``): the file is readable, the mapping is a first guess."""
        from .mapping import auto_map

        path = Path(path)
        catalog = self.services.store.catalog()
        entity = catalog.entity(entity_key)
        self.services.policy.check(actor, entity, "import")
        source = open_table(path, sheet=sheet, file_name=file_name)
        mapping = {h: f for h, f in auto_map(source.headers, catalog, entity).items() if f}
        with self.engine.begin() as conn:
            return inserted_id(conn.execute(import_run.insert().values(
                entity=entity.key, file_path=str(path), file_name=file_name[:255], file_sha256=file_sha256(path), sheet=source.sheet,
                mapping=mapping, mode="insert", key_field=None, batch_size=DEFAULT_BATCH, status="draft", checkpoint=0,
                created_by=actor.id, created_at=now(), updated_at=now(),
            )))

    def configure(self, run_id: int, *, mapping: dict | None = None, mode: str | None = None, key: str | None = "", ready: bool = False) -> dict:
        """Change a draft's mapping and/or options; ``ready`` checks them all (before a dry run or the start)."""
        info = self.run_info(run_id)
        if info["status"] != "draft":
            raise ValidationFailed({"_schema": [text("This import has already started; its settings can no longer change.",
                                                     "该导入已开始，设置不能再修改。")]})
        catalog = self.services.store.catalog()
        entity = catalog.entity(info["entity"])
        source = open_table(info["file_path"], sheet=info["sheet"], file_name=info["file_name"])
        values: dict[str, Any] = {}
        if mapping is not None:
            values["mapping"] = check_mapping(mapping, source.headers, catalog, entity)
        if mode is not None:
            values["mode"] = mode
        if key != "":
            values["key_field"] = key or None
        merged = {**info, **values}
        if ready or mode is not None:
            self._check_options(catalog, entity, merged["mapping"], merged["mode"], merged["key_field"])
        if values:
            with self.engine.begin() as conn:
                conn.execute(import_run.update().where(import_run.c.id == run_id).values(**values, updated_at=now()))
        return merged

    def mark_pending(self, run_id: int) -> None:
        """The wizard's last step: settings are final; a worker (or the CLI) runs it from here."""
        info = self.configure(run_id, ready=True)
        if info["status"] == "draft":
            with self.engine.begin() as conn:
                conn.execute(import_run.update().where(import_run.c.id == run_id, import_run.c.status == "draft").values(status="pending", updated_at=now()))

    def _check_options(self, catalog, entity, mapping: dict, mode: str, key: str | None) -> None:
        if mode not in MODES:
            raise ValidationFailed({"mode": [text("Choose insert, update or upsert.", "请选择仅新增、仅更新或新增并更新。")]})
        if mode != "insert" and not key:
            raise ValidationFailed({"key": [text("Updating needs a key field to match records by.", "更新需要选择一个匹配记录的字段。")]})
        if key:
            f = entity.field_map.get(key)
            if f is None or not f.unique:
                raise ValidationFailed({"key": [text("The key must be a unique field (such as the mobile number or ID number).",
                                                     "匹配字段必须是唯一字段（如手机号、身份证号）。")]})
            if key not in mapping.values():
                raise ValidationFailed({"key": [text("The key field '{field}' is not mapped to a column of the file.",
                                                     "匹配字段“{field}”没有对应到文件中的任何列。", field=key)]})

    def run_info(self, run_id: int) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(select(import_run).where(import_run.c.id == run_id)).mappings().first()
        if row is None:
            from ..errors import RecordNotFound

            raise RecordNotFound(text("Import #{id} does not exist.", "导入任务 #{id} 不存在。", id=run_id))
        return dict(row)

    def request_cancel(self, run_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(import_run.update().where(import_run.c.id == run_id).values(cancel_requested=True, updated_at=now()))

    def dry_run(self, run_id: int, actor: Actor, *, progress: Callable | None = None, limit: int | None = None) -> Summary:
        """Everything a real run does, rolled back batch by batch: counts and per-row problems, nothing written.
        ``limit`` checks only the first rows (the wizard's quick check of a big file)."""
        return self.run(run_id, actor, progress=progress, dry_run=True, limit=limit)

    # --- the loop ----------------------------------------------------------------------
    def run(self, run_id: int, actor: Actor, *, progress: Callable[[int, int, str | None], None] | None = None,
            cancel_requested: Callable[[], bool] | None = None, dry_run: bool = False, limit: int | None = None) -> Summary:
        """Run (or resume) an import. Safe to call again after a crash: it continues after the checkpoint."""
        info = self.run_info(run_id)
        if info["status"] in FINISHED and not dry_run:
            return self._summary(info)
        if info["status"] == "draft" and not dry_run:
            raise ValidationFailed({"_schema": [text("Finish the import settings first.", "请先完成导入设置。")]})
        catalog = self.services.store.catalog()
        entity = catalog.entity(info["entity"])
        self.services.policy.check(actor, entity, "import")
        if info["mode"] in ("insert", "upsert"):
            self.services.policy.check(actor, entity, "create")
        if info["mode"] in ("update", "upsert"):
            self.services.policy.check(actor, entity, "update")
        path = Path(info["file_path"])
        if not path.exists() or file_sha256(path) != info["file_sha256"]:
            return self._fail(run_id, text("The uploaded file is gone or changed; start a new import.", "上传的文件已不存在或已被修改，请重新导入。"))
        source = open_table(path, sheet=info["sheet"], file_name=info["file_name"])
        columns = [(source.headers.index(h), h, entity.field(fname)) for h, fname in info["mapping"].items() if h in source.headers]
        key = info["key_field"]
        total = source.count()
        summary = Summary(run_id, "running", total=total) if dry_run else self._summary(info)
        summary.total = total
        start_after = 0 if dry_run else info["checkpoint"]
        if not dry_run:
            with self.engine.begin() as conn:
                conn.execute(import_run.update().where(import_run.c.id == run_id).values(status="running", total_rows=total, updated_at=now()))
        seen: dict[Any, int] = {}
        batch: list[tuple[int, list]] = []
        taken = 0
        self._links = LinkResolver(self.services.queries, catalog, actor)
        self._parse = CellParser(catalog)
        key_column = next(((i, f) for i, _h, f in columns if f.name == key), None)
        try:
            for number, cells in source.rows():
                if number <= start_after:
                    self._remember_key(catalog, key_column, number, cells, seen)
                    continue
                if limit is not None and taken >= limit:
                    break
                taken += 1
                batch.append((number, cells))
                if len(batch) >= info["batch_size"]:
                    self._batch(run_id, info, catalog, entity, source, columns, key_column, batch, seen, actor, summary, dry_run)
                    batch = []
                    if progress:
                        progress(summary.created + summary.updated + summary.skipped + summary.errors, total, None)
                    if self._cancelled(run_id, cancel_requested):
                        raise Cancelled()
            if batch:
                self._batch(run_id, info, catalog, entity, source, columns, key_column, batch, seen, actor, summary, dry_run)
        except Cancelled:
            summary.status = "cancelled"
            if not dry_run:
                self._finish(run_id, "cancelled", text("Cancelled after row {n}.", "已在第 {n} 行后取消。", n=summary.checkpoint))
            return summary
        except Exception as exc:
            if not dry_run:
                self._fail(run_id, text("The import stopped: {problem}", "导入中断：{problem}", problem=getattr(exc, "message", None) or str(exc)))
            raise
        if progress:
            progress(total, total, None)
        summary.status = "succeeded"
        summary.checked = taken
        if not dry_run:
            self._finish(run_id, "succeeded", None)
        return summary

    def _cancelled(self, run_id: int, hook: Callable[[], bool] | None) -> bool:
        if hook is not None and hook():
            return True
        with self.engine.connect() as conn:
            return bool(conn.execute(select(import_run.c.cancel_requested).where(import_run.c.id == run_id)).scalar())

    def _remember_key(self, catalog, key_column, number, cells, seen) -> None:
        if key_column is None:
            return
        i, f = key_column
        try:
            v = cell_value(catalog.type_of(f), f, cells[i] if i < len(cells) else None)
        except ValueError:
            return
        if v not in (None, "") and v not in seen:
            seen[v] = number

    def _batch(self, run_id, info, catalog, entity, source: TableSource, columns, key_column, batch, seen, actor, summary: Summary, dry_run) -> None:
        width = len(source.headers)
        key_name = key_column[1].name if key_column is not None else None
        text_fields = {f.name for _i, _h, f in columns if uses_base_parsing(catalog.type_of(f)) and f.name != key_name}
        items: list[dict] = []
        item_rows: list[tuple[int, list]] = []
        problems: list[RowProblem] = []
        for number, cells in batch:
            values, errs = {}, []
            for i, header, f in columns:
                try:
                    raw = cells[i] if i < len(cells) else None
                    linked = self._links(f, raw) if f.type == "link" else None
                    if linked is not None:
                        values[f.name] = linked
                    elif f.name in text_fields:
                        # Parsed once, by the record service's validation (the same marshmallow field parse_text uses).
                        values[f.name] = cell_text(f, raw)
                    else:
                        values[f.name] = cell_value(catalog.type_of(f), f, raw, self._parse)
                except ValueError as exc:
                    errs.append({"column": header, "message": _msg(exc.args[0])})
            if errs:
                problems.append(RowProblem(number, "error", errs, cells_as_text(cells, width)))
                continue
            if key_column is not None:
                kv = values.get(key_column[1].name)
                if kv not in (None, ""):
                    if kv in seen and seen[kv] != number:
                        header = next(h for i, h, f in columns if f is key_column[1])
                        problems.append(RowProblem(number, "skip", [{"column": header, "message": _msg(text(
                            "Duplicate of row {n} in this file (same {field}); skipped.", "与文件第 {n} 行重复（{field}相同），已跳过。",
                            n=seen[kv], field=header))}], cells_as_text(cells, width)))
                        continue
                    seen[kv] = number
            # Empty cells are not sent: an update never blanks a field because the file left it empty.
            items.append({k: v for k, v in values.items() if v not in (None, "", [])} if info["mode"] != "insert" else
                         {k: v for k, v in values.items() if v is not None})
            item_rows.append((number, cells))
        header_of = {f.name: h for _i, h, f in columns}
        last_row = batch[-1][0]

        def commit(conn, results: list[ItemResult]) -> None:
            all_problems = list(problems)
            for (number, cells), r in zip(item_rows, results):
                if r.errors:
                    msgs = [{"column": header_of.get(k, "" if k == "_schema" else k), "message": _msg(m)} for k, v in r.errors.items() for m in v]
                    all_problems.append(RowProblem(number, "error", msgs, cells_as_text(cells, width)))
                elif r.action == "skipped":
                    reason = (text("A record with this key already exists; skipped (insert only).", "已存在相同匹配值的记录，已跳过（仅新增）。")
                              if info["mode"] == "insert" else text("No record has this key; skipped (update only).", "没有匹配的记录，已跳过（仅更新）。"))
                    all_problems.append(RowProblem(number, "skip", [{"column": header_of.get(info["key_field"], ""), "message": _msg(reason)}],
                                                   cells_as_text(cells, width)))
            created = sum(1 for r in results if r.action == "created")
            updated = sum(1 for r in results if r.action in ("updated", "unchanged"))
            skipped = sum(1 for p in all_problems if p.kind == "skip")
            errors = sum(1 for p in all_problems if p.kind == "error")
            if not dry_run:
                if all_problems:
                    conn.execute(import_error.insert(), [{"run_id": run_id, "row_number": p.row, "kind": p.kind, "messages": p.messages,
                                                          "cells": p.cells} for p in all_problems])
                conn.execute(import_run.update().where(import_run.c.id == run_id).values(
                    checkpoint=last_row, created_count=import_run.c.created_count + created, updated_count=import_run.c.updated_count + updated,
                    skipped_count=import_run.c.skipped_count + skipped, error_count=import_run.c.error_count + errors, updated_at=now()))
            summary.created += created
            summary.updated += updated
            summary.skipped += skipped
            summary.errors += errors
            summary.checkpoint = last_row
            if dry_run:
                room = DRY_RUN_ERROR_LIMIT - len(summary.problems)
                summary.problems.extend(sorted(all_problems, key=lambda p: p.row)[:max(room, 0)])

        records = self.services.records
        try:
            records.write_many(entity.key, items, actor, mode=info["mode"], key=info["key_field"], within=commit, dry_run=dry_run)
        except CrmkitError:
            # A batch-wide refusal (a race on a unique value, a row outside the actor's scope): go record by record,
            # each with its own checkpoint, so the one bad row is reported and the others still land.
            if len(items) <= 1 and not problems:
                raise
            self._one_by_one(run_id, info, catalog, entity, source, columns, key_column, batch, seen, actor, summary, dry_run)

    def _one_by_one(self, run_id, info, catalog, entity, source, columns, key_column, batch, seen, actor, summary, dry_run) -> None:
        for number, cells in batch:
            try:
                self._batch(run_id, info, catalog, entity, source, columns, key_column, [(number, cells)], seen, actor, summary, dry_run)
            except CrmkitError as exc:
                problem = RowProblem(number, "error", [{"column": "", "message": _msg(exc.message)}], cells_as_text(cells, len(source.headers)))
                if not dry_run:
                    with self.engine.begin() as conn:
                        conn.execute(import_error.insert().values(run_id=run_id, row_number=number, kind="error", messages=problem.messages, cells=problem.cells))
                        conn.execute(import_run.update().where(import_run.c.id == run_id).values(
                            checkpoint=number, error_count=import_run.c.error_count + 1, updated_at=now()))
                else:
                    summary.problems.append(problem)
                summary.errors += 1
                summary.checkpoint = number

    def _summary(self, info: dict) -> Summary:
        return Summary(info["id"], info["status"], total=info["total_rows"] or 0, created=info["created_count"], updated=info["updated_count"],
                       skipped=info["skipped_count"], errors=info["error_count"], checkpoint=info["checkpoint"])

    def _finish(self, run_id: int, status: str, message) -> None:
        with self.engine.begin() as conn:
            conn.execute(import_run.update().where(import_run.c.id == run_id).values(
                status=status, message=message and message.en, finished_at=now(), updated_at=now()))

    def _fail(self, run_id: int, message: Text) -> Summary:
        self._finish(run_id, "failed", message)
        return self._summary(self.run_info(run_id))
