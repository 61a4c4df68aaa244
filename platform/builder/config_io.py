"""Configuration export and import: the whole set of definitions as a folder of JSON files.

The folder has one sub-folder per app in the same layout as a template (``app.json``, ``entities/``,
``forms/``, ``views/``), one file per definition, written as pretty, key-sorted JSON with a final
newline so it diffs cleanly in git. Import reads the same folders (or a zip of them), validates the
whole catalog, plans the schema changes and applies them; lossy steps need confirmation.
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy import select

from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.audit import record_event_now
from crmkit.runtime.errors import DefinitionError
from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.meta.loader import KIND_FOLDERS, load_app_folder
from crmkit.runtime.services import Services
from crmkit.runtime.storage import platform_tables as pt
from crmkit.runtime.storage.plan import Plan, Planner
from crmkit.runtime.storage.publish import publish_documents

FOLDER = dict(KIND_FOLDERS)
MAX_ZIP_BYTES = 20 * 1024 * 1024


def dump(body) -> str:
    """The one JSON format of exported files: stable, sorted, pretty, UTF-8, final newline."""
    return json.dumps(body, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def file_name(kind: str, body: dict, key: str = "") -> str:
    """Where a definition goes: app.json, entities/<name>.json, forms|views/<entity>.<name>.json, and
    workflows|reports|dashboards|automations/<key without the app>.json (the stored key is unique per kind)."""
    if kind == "app":
        return "app.json"
    if kind == "entity":
        return f"{FOLDER[kind]}/{body['name']}.json"
    if kind in ("form", "view"):
        entity = body["entity"].split(".", 1)[1]
        return f"{FOLDER[kind]}/{entity}.{body['name']}.json"
    name = key.split(".", 1)[-1] if key else body.get("name", "definition")
    return f"{FOLDER[kind]}/{name}.json"


def export_files(services: Services) -> dict[str, str]:
    """Relative path → file text for every stored definition."""
    with services.engine.connect() as conn:
        rows = conn.execute(select(pt.document.c.kind, pt.document.c.app, pt.document.c.key, pt.document.c.body)).all()
    return {f"{r.app}/{file_name(r.kind, r.body, r.key)}": dump(r.body) for r in sorted(rows, key=lambda r: (r.app, r.kind, json.dumps(r.body, sort_keys=True)))}


def export_folder(services: Services, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    files = export_files(services)
    for rel, content in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, "utf-8")
    return sorted(files)


def export_zip(services: Services) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, content in sorted(export_files(services).items()):
            info = zipfile.ZipInfo(f"crmkit-config/{rel}", date_time=(2020, 1, 1, 0, 0, 0))  # stable bytes for equal content
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
    return buf.getvalue()


def read_folder(folder: Path) -> list[RawDocument]:
    """Documents from every app sub-folder; apps another app depends on come first."""
    apps = [p for p in sorted(folder.iterdir()) if p.is_dir() and (p / "app.json").exists()]
    if not apps:
        raise DefinitionError([(str(folder), "", "no app folders (each with an app.json) found here")])
    loaded = {p.name: load_app_folder(p) for p in apps}
    order: list[str] = []

    def visit(name: str, chain: tuple):
        if name in order or name in chain or name not in loaded:
            return
        for dep in loaded[name][0].body.get("depends", []) if isinstance(loaded[name][0].body, dict) else []:
            visit(dep, chain + (name,))
        order.append(name)

    for name in loaded:
        visit(name, ())
    return [d for name in order for d in loaded[name]]


def read_zip(data: bytes, workdir: Path) -> list[RawDocument]:
    """Unpack a zip (only .json files, no absolute paths or ``..``) into ``workdir`` and read it."""
    if len(data) > MAX_ZIP_BYTES:
        raise DefinitionError([("upload", "", "the zip is larger than 20 MiB")])
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DefinitionError([("upload", "", "not a zip file")]) from None
    with zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        for n in names:
            p = PurePosixPath(n)
            if p.is_absolute() or ".." in p.parts or p.suffix != ".json":
                raise DefinitionError([("upload", n, "only .json files inside the zip's folders are accepted")])
        total = sum(zf.getinfo(n).file_size for n in names)
        if total > 5 * MAX_ZIP_BYTES:
            raise DefinitionError([("upload", "", "the zip unpacks to more than 100 MiB")])
        for n in names:
            target = workdir / n
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(n))
    root = workdir
    subdirs = [p for p in workdir.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and not (subdirs[0] / "app.json").exists():
        root = subdirs[0]  # the export's own top folder (crmkit-config/)
    return read_folder(root)


@dataclass
class ImportResult:
    plan: Plan
    changed: list[str]
    applied: bool


def import_documents(services: Services, docs: list[RawDocument], *, confirm: bool = False, actor: Actor = SYSTEM,
                     dry_run: bool = False) -> ImportResult:
    """Validate the would-be catalog, plan, refuse unconfirmed lossy steps, then save and apply."""
    from crmkit.runtime.meta.loader import document_key

    preview = services.store.preview(docs)  # DefinitionError lists every problem
    plan = Planner(services.engine, preview).plan()
    with services.engine.connect() as conn:
        live = {(r.kind, r.key): r.body for r in conn.execute(select(pt.document.c.kind, pt.document.c.key, pt.document.c.body))}
    changed = [f"{d.kind}:{document_key(d)}" for d in docs if live.get((d.kind, document_key(d))) != d.body]
    if dry_run:
        return ImportResult(plan, changed, False)
    publish_documents(services.store, services.engine, docs, confirm=confirm, actor_id=actor.id, comment="config import", plan=plan)
    record_event_now(services.engine, category="builder", action="config_import", actor_id=actor.id, subject="config",
                     changes={"documents": changed[:200], "steps": [s.description for s in plan.steps][:100]})
    return ImportResult(plan, changed, True)
