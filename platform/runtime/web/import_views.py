"""The import wizard: upload → mapping → options → dry run → start → progress → results and error report.

Wizard state lives in the import run row (status ``draft`` until started), so every step is a plain URL that
survives a reload. Everything needs the entity's ``import`` permission; a run is visible to the user who
started it and to administrators.
"""
from __future__ import annotations

import uuid
from itertools import islice
from pathlib import Path

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from flask_login import current_user

from ..errors import RecordNotFound, ValidationFailed
from ..i18n_text import text
from ..imports import ImportEngine
from ..imports.mapping import apply_saved, importable_fields, save_mapping, saved_mappings
from ..imports.reader import cells_as_text, open_table
from ..imports.report import report_csv, report_xlsx
from ..imports.submit import submit_import
from ..imports.tables import import_run
from .display import field_label
from .entity_views import acting, entity_of, services
from .i18n import current_locale

import_blueprint = Blueprint("crmkit_import", __name__)

ALLOWED = (".csv", ".xlsx", ".xlsm", ".txt")
SAMPLE_ROWS = 3
WEB_DRY_RUN_ROWS = 5000  # a quick check inside the request; `crmkit import --dry-run` checks a whole big file


def _login():
    return redirect(url_for(current_app.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.full_path))


def _engine() -> ImportEngine:
    return ImportEngine(services())


def _run(run_id: int):
    """The run, its entity and the actor, after the permission checks."""
    actor = acting()
    info = _engine().run_info(run_id)
    entity = entity_of(info["entity"])
    services().policy.check(actor, entity, "import")
    if info["created_by"] != actor.id and not actor.is_admin:
        raise RecordNotFound(text("Import #{id} does not exist.", "导入任务 #{id} 不存在。", id=run_id))
    return info, entity, actor


@import_blueprint.route("/e/<entity_key>/import", methods=["GET", "POST"])
def upload(entity_key: str):
    if not current_user.is_authenticated:
        return _login()
    actor = acting()
    entity = entity_of(entity_key)
    svc = services()
    svc.policy.check(actor, entity, "import")
    error = None
    if request.method == "POST":
        f = request.files.get("file")
        name = Path((f.filename if f else "") or "").name
        if not f or not name:
            error = text("Choose a file to upload.", "请选择要上传的文件。")
        elif not name.lower().endswith(ALLOWED):
            error = text("Upload a .csv or .xlsx file.", "请上传 .csv 或 .xlsx 文件。")
        else:
            folder = Path(svc.settings.var_dir) / "imports"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{uuid.uuid4().hex}{Path(name).suffix.lower()}"
            f.save(path)
            try:
                run_id = _engine().create_draft(path, entity.key, actor, file_name=name, sheet=request.form.get("sheet") or None)
            except ValidationFailed as exc:
                path.unlink(missing_ok=True)
                error = next(iter(exc.field_errors.values()))[0]
            else:
                return redirect(url_for("crmkit_import.mapping", run_id=run_id))
    with svc.engine.connect() as conn:
        from sqlalchemy import select

        q = select(import_run).where(import_run.c.entity == entity.key, import_run.c.status != "draft")
        if not actor.is_admin:
            q = q.where(import_run.c.created_by == actor.id)
        recent = conn.execute(q.order_by(import_run.c.id.desc()).limit(10)).mappings().all()
    return render_template("crmkit/imports/upload.html", entity=entity, error=error, recent=recent), (422 if error else 200)


@import_blueprint.route("/imports/<int:run_id>/mapping", methods=["GET", "POST"])
def mapping(run_id: int):
    if not current_user.is_authenticated:
        return _login()
    info, entity, actor = _run(run_id)
    if info["status"] != "draft":
        return redirect(url_for("crmkit_import.progress", run_id=run_id))
    svc = services()
    catalog = svc.store.catalog()
    source = open_table(info["file_path"], sheet=info["sheet"], file_name=info["file_name"])
    saved = saved_mappings(svc.engine, entity.key)
    current = dict(info["mapping"])
    errors = {}
    if request.method == "POST":
        if request.form.get("apply_saved") in saved:
            current = {h: f for h, f in apply_saved(saved[request.form["apply_saved"]], source.headers).items() if f}
            if current:
                _engine().configure(run_id, mapping=current)
        else:
            wanted = {h: request.form.get(f"col_{i}") or None for i, h in enumerate(source.headers)}
            try:
                _engine().configure(run_id, mapping=wanted)
            except ValidationFailed as exc:
                errors = exc.field_errors
                current = {h: f for h, f in wanted.items() if f}
            else:
                if request.form.get("save_name", "").strip():
                    save_mapping(svc.engine, entity.key, request.form["save_name"], {h: f for h, f in wanted.items() if f}, actor.id)
                return redirect(url_for("crmkit_import.options", run_id=run_id))
    samples = [cells_as_text(cells, len(source.headers)) for _number, cells in islice(source.rows(), SAMPLE_ROWS)]
    locale = current_locale()
    fields = [(f.name, field_label(catalog, entity, f.name, locale), f.required) for f in importable_fields(catalog, entity)]
    columns = [{"index": i, "header": h, "field": current.get(h), "samples": [s[i] for s in samples],
                "errors": errors.get(h, [])} for i, h in enumerate(source.headers)]
    missing = [label for name, label, required in fields if required and name not in current.values()
               and entity.field(name).type != "sequence" and entity.field(name).default is None]
    return render_template("crmkit/imports/mapping.html", entity=entity, run=info, columns=columns, fields=fields, saved=sorted(saved),
                           errors=errors, missing=missing), (422 if errors else 200)


@import_blueprint.route("/imports/<int:run_id>/options", methods=["GET", "POST"])
def options(run_id: int):
    if not current_user.is_authenticated:
        return _login()
    info, entity, actor = _run(run_id)
    if info["status"] != "draft":
        return redirect(url_for("crmkit_import.progress", run_id=run_id))
    catalog = services().store.catalog()
    locale = current_locale()
    keys = [(f.name, field_label(catalog, entity, f.name, locale)) for f in entity.fields if f.unique and f.name in info["mapping"].values()]
    errors, summary = {}, None
    if request.method == "POST":
        mode, key = request.form.get("mode", "insert"), request.form.get("key") or None
        try:
            info = _engine().configure(run_id, mode=mode, key=key, ready=True)
        except ValidationFailed as exc:
            errors = exc.field_errors
            info = {**info, "mode": mode, "key_field": key}
        else:
            if request.form.get("action") == "start":
                _engine().mark_pending(run_id)
                submit_import(services(), run_id, actor)
                return redirect(url_for("crmkit_import.progress", run_id=run_id))
            summary = _engine().dry_run(run_id, actor, limit=WEB_DRY_RUN_ROWS)
    return render_template("crmkit/imports/options.html", entity=entity, run=info, keys=keys, errors=errors, summary=summary,
                           locale=locale), (422 if errors else 200)


@import_blueprint.route("/imports/<int:run_id>")
def progress(run_id: int):
    if not current_user.is_authenticated:
        return _login()
    info, entity, _actor = _run(run_id)
    if info["status"] == "draft":
        return redirect(url_for("crmkit_import.mapping", run_id=run_id))
    template = "crmkit/imports/_status.html" if request.headers.get("HX-Request") else "crmkit/imports/progress.html"
    return render_template(template, entity=entity, run=info)


@import_blueprint.route("/imports/<int:run_id>/cancel", methods=["POST"])
def cancel(run_id: int):
    info, _entity, _actor = _run(run_id)
    if info["status"] in ("pending", "running"):
        _engine().request_cancel(run_id)
    return redirect(url_for("crmkit_import.progress", run_id=run_id))


@import_blueprint.route("/imports/<int:run_id>/errors.<fmt>")
def error_report(run_id: int, fmt: str):
    if not current_user.is_authenticated:
        return _login()
    info, entity, _actor = _run(run_id)
    locale = current_locale()
    name = f"{entity.key}-import-{run_id}-errors"
    if fmt == "csv":
        return Response(report_csv(services().engine, run_id, locale), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"', "Cache-Control": "no-store"})
    if fmt == "xlsx":
        return Response(report_xlsx(services().engine, run_id, locale), mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"', "Cache-Control": "no-store"})
    raise RecordNotFound(text("Choose csv or xlsx.", "请选择 csv 或 xlsx 格式。"))

