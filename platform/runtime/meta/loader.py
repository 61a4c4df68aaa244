"""Read an app folder (manifest + definitions by kind) into raw documents."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import DefinitionError
from .compile import RawDocument

KIND_FOLDERS = (("entity", "entities"), ("form", "forms"), ("view", "views"), ("workflow", "workflows"), ("report", "reports"),
                ("dashboard", "dashboards"), ("automation", "automations"))


def read_json(path: Path, label: str):
    try:
        return json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise DefinitionError([(label, "", f"not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}")]) from None
    except UnicodeDecodeError:
        raise DefinitionError([(label, "", "not UTF-8 text")]) from None


def load_app_folder(folder: Path) -> list[RawDocument]:
    """The manifest first, then entities, forms and views in file-name order."""
    manifest_path = folder / "app.json"
    label = lambda p: f"{folder.name}/{p.relative_to(folder).as_posix()}"
    if not manifest_path.exists():
        raise DefinitionError([(f"{folder.name}/app.json", "", "missing: every app needs an app.json manifest")])
    manifest = read_json(manifest_path, label(manifest_path))
    app_id = manifest.get("id") if isinstance(manifest, dict) else None
    docs = [RawDocument("app", app_id or folder.name, manifest, label(manifest_path))]
    for kind, sub in KIND_FOLDERS:
        for path in sorted((folder / sub).glob("*.json")):
            docs.append(RawDocument(kind, app_id or folder.name, read_json(path, label(path)), label(path)))
    return docs


def document_key(doc: RawDocument) -> str:
    body = doc.body
    if doc.kind == "app":
        return body["id"]
    if doc.kind in ("entity", "report", "dashboard"):
        return f"{doc.app}.{body['name']}"
    return f"{body['entity']}:{body['name']}"
