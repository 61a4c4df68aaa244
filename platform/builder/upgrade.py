"""Template upgrades: a three-way merge of (installed base, local definitions, new template version).

When a template is installed its documents are kept as the *base* (``crmkit_template_base``). An
upgrade compares each document of the new version with that base and with the live (possibly
customised) document: a change made on one side only is taken; the same change on both sides is
fine; different changes to the same value are conflicts, listed for a decision ("local" keeps the
customisation, "theirs" takes the template's). Lists of identified items (fields by id, options by
value, sections by id, …) merge item by item, so a field the business added and a field the new
template adds both survive.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import Connection, select

from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.audit import record_event_now
from crmkit.runtime.db import write_transaction
from crmkit.runtime.errors import CrmkitError
from crmkit.runtime.i18n_text import text
from crmkit.runtime.installer import record_template_base
from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.meta.loader import document_key, load_app_folder
from crmkit.runtime.services import Services
from crmkit.runtime.storage import platform_tables as pt
from crmkit.runtime.storage.plan import Plan, Planner
from crmkit.runtime.storage.publish import publish_documents

from .diff import _identity

MISSING = object()
CHOICES = ("local", "theirs")


class UnresolvedConflicts(CrmkitError):
    code = "upgrade_conflicts"
    status = 409
    default_message = text("The upgrade has conflicts; decide each one (keep yours or take the template's).",
                           "升级存在冲突；请逐项决定保留本地修改还是采用模板版本。")


@dataclass
class Conflict:
    document: str  # kind:key
    path: str
    base: Any
    local: Any
    theirs: Any

    @property
    def id(self) -> str:
        return f"{self.document}#{self.path}"

    def to_dict(self) -> dict:
        return {"id": self.id, "document": self.document, "path": self.path, "base": _plain(self.base),
                "local": _plain(self.local), "theirs": _plain(self.theirs)}


@dataclass
class UpgradePlan:
    app: str
    from_version: str | None
    to_version: str
    documents: list[RawDocument]
    conflicts: list[Conflict] = field(default_factory=list)
    local_changes: list[str] = field(default_factory=list)  # documents whose customisations were kept
    plan: Plan | None = None


def _plain(v):
    return None if v is MISSING else v


# --- the merge ---------------------------------------------------------------------------------

def merge3(base: Any, local: Any, theirs: Any, path: str, decide: Callable[[str, Any, Any, Any], Any]) -> Any:
    """Merge one JSON value; ``decide`` picks a side for a conflict (and records it)."""
    if _eq(local, theirs):
        return local
    if _eq(base, local):
        return theirs
    if _eq(base, theirs):
        return local
    if all(isinstance(v, dict) for v in (local, theirs)) and (base is MISSING or isinstance(base, dict)):
        b = base if isinstance(base, dict) else {}
        out = {}
        for k in list(local) + [k for k in theirs if k not in local]:
            v = merge3(b.get(k, MISSING), local.get(k, MISSING), theirs.get(k, MISSING), f"{path}/{k}", decide)
            if v is not MISSING:
                out[k] = v
        return out
    if all(isinstance(v, list) and _identified(v) for v in (local, theirs)) and (base is MISSING or (isinstance(base, list) and _identified(base))):
        b = {_identity(i): i for i in (base if isinstance(base, list) else [])}
        lo = {_identity(i): i for i in local}
        th = {_identity(i): i for i in theirs}
        order = [_identity(i) for i in local] + [_identity(i) for i in theirs if _identity(i) not in lo]
        out = []
        for ident in order:
            v = merge3(b.get(ident, MISSING), lo.get(ident, MISSING), th.get(ident, MISSING), f"{path}/{ident}", decide)
            if v is not MISSING:
                out.append(v)
        return out
    return decide(path, base, local, theirs)


def _eq(a, b) -> bool:
    if a is MISSING or b is MISSING:
        return a is b
    return a == b


def _identified(items: list) -> bool:
    ids = [_identity(i) for i in items]
    return None not in ids and len(set(ids)) == len(ids)


# --- planning and applying -----------------------------------------------------------------------

def base_snapshot(services: Services, app_id: str) -> tuple[str | None, dict]:
    with services.engine.connect() as conn:
        rows = conn.execute(select(pt.template_base).where(pt.template_base.c.app == app_id)).all()
    version = rows[0].app_version if rows else None
    return version, {(r.kind, r.key): r.body for r in rows}


def record_base(conn: Connection, app_id: str, version: str, docs: list[RawDocument]) -> None:
    """Keep the template's documents as installed: the base of the next upgrade."""
    record_template_base(conn, app_id, version, [d for d in docs if d.app == app_id])


def plan_upgrade(services: Services, app_id: str, folder: Path, decisions: dict[str, str] | None = None,
                 default: str | None = None) -> UpgradePlan:
    """Merge the template in ``folder`` over the live definitions; conflicts are decided by
    ``decisions`` (conflict id → local/theirs) or ``default``, else left listed (local value kept)."""
    decisions = decisions or {}
    theirs_docs = load_app_folder(folder)
    to_version = theirs_docs[0].body.get("version", "")
    from_version, base = base_snapshot(services, app_id)
    with services.engine.connect() as conn:
        live = {(r.kind, r.key): r.body for r in conn.execute(select(pt.document.c.kind, pt.document.c.key, pt.document.c.body))}
    result = UpgradePlan(app_id, from_version, to_version, [])
    for d in theirs_docs:
        key = (d.kind, document_key(d))
        doc_id = f"{d.kind}:{key[1]}"
        local = live.get(key, MISSING)
        b = base.get(key, MISSING) if base else local  # no snapshot (installed before snapshots): no local changes known
        if local is not MISSING and not _eq(b, local):
            result.local_changes.append(doc_id)

        def decide(path, bv, lv, tv, doc_id=doc_id):
            conflict = Conflict(doc_id, path or "/", bv, lv, tv)
            choice = decisions.get(conflict.id) or default
            if choice not in CHOICES:
                result.conflicts.append(conflict)
                choice = "local"
            return lv if choice == "local" else tv

        merged = merge3(b, local, d.body, "", decide)
        if merged is not MISSING:
            result.documents.append(RawDocument(d.kind, d.app, merged, d.source))
    return result


def apply_upgrade(services: Services, app_id: str, folder: Path, *, decisions: dict[str, str] | None = None, default: str | None = None,
                  confirm: bool = False, actor: Actor = SYSTEM) -> UpgradePlan:
    result = plan_upgrade(services, app_id, folder, decisions, default)
    if result.conflicts:
        raise UnresolvedConflicts(details={"conflicts": [c.to_dict() for c in result.conflicts]})
    preview = services.store.preview(result.documents)
    result.plan = Planner(services.engine, preview).plan()
    publish_documents(services.store, services.engine, result.documents, confirm=confirm, actor_id=actor.id,
                      comment=f"upgrade {app_id} to {result.to_version}", plan=result.plan)
    template = load_app_folder(folder)
    with write_transaction(services.engine) as conn:
        record_base(conn, app_id, result.to_version, template)
        conn.execute(pt.installed_app.update().where(pt.installed_app.c.id == app_id).values(version=result.to_version))
    record_event_now(services.engine, category="builder", action="template_upgrade", actor_id=actor.id, subject=f"app:{app_id}",
                     changes={"from": result.from_version, "to": result.to_version, "kept_local": result.local_changes[:100],
                              "decisions": dict(list((decisions or {}).items())[:100]), "default": default})
    return result


def describe(value: Any) -> str:
    return "—" if value is MISSING or value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)[:300]
