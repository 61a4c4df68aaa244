"""Column mapping: which file column feeds which field. Automatic (name, zh/en label, then similarity), adjustable,
and savable under a name for the next file of the same shape."""
from __future__ import annotations

import datetime as dt
import difflib
import re

from sqlalchemy import Engine, select

from ..db import write_transaction
from ..errors import ValidationFailed
from ..i18n_text import text
from ..meta.catalog import Catalog
from ..meta.model import EntityDef, FieldDef
from .tables import import_mapping

NOT_IMPORTABLE = ("child_table", "attachment")
SIMILARITY = 0.6
_PUNCT = re.compile(r"[\s_\-()（）\[\]【】:：*＊/\\.]+")


def importable_fields(catalog: Catalog, entity: EntityDef) -> list[FieldDef]:
    return [f for f in entity.fields if f.type not in NOT_IMPORTABLE and catalog.type_of(f).stored]


def _norm(s: str) -> str:
    return _PUNCT.sub("", (s or "").lower())


def auto_map(headers: list[str], catalog: Catalog, entity: EntityDef) -> dict[str, str | None]:
    """header → field name (or None). Exact matches first, then the most similar remaining pairs."""
    fields = importable_fields(catalog, entity)
    names: dict[str, str] = {}
    for f in fields:
        for n in (f.name, f.label.zh, f.label.en):
            if n:
                names.setdefault(_norm(n), f.name)
    out: dict[str, str | None] = {h: None for h in headers}
    used: set[str] = set()
    for h in headers:
        fname = names.get(_norm(h))
        if fname and fname not in used:
            out[h] = fname
            used.add(fname)
    pairs = []
    for h in headers:
        if out[h] is not None or not _norm(h):
            continue
        for n, fname in names.items():
            if fname in used:
                continue
            ratio = difflib.SequenceMatcher(None, _norm(h), n).ratio()
            if ratio >= SIMILARITY:
                pairs.append((ratio, h, fname))
    for _ratio, h, fname in sorted(pairs, key=lambda p: -p[0]):
        if out[h] is None and fname not in used:
            out[h] = fname
            used.add(fname)
    return out


def check_mapping(mapping: dict[str, str | None], headers: list[str], catalog: Catalog, entity: EntityDef) -> dict[str, str]:
    """Keep the mapped pairs; refuse unknown headers/fields and a field fed by two columns."""
    allowed = {f.name for f in importable_fields(catalog, entity)}
    out: dict[str, str] = {}
    errors: dict[str, list] = {}
    used: dict[str, str] = {}
    for h, fname in (mapping or {}).items():
        if not fname:
            continue
        if h not in headers:
            errors[h] = [text("The file has no column '{col}'.", "文件中没有“{col}”这一列。", col=h)]
        elif fname not in allowed:
            errors[h] = [text("'{field}' is not a field that can be imported.", "“{field}”不是可导入的字段。", field=fname)]
        elif fname in used:
            errors[h] = [text("'{field}' is already fed by column '{col}'.", "“{field}”已由“{col}”列提供。", field=fname, col=used[fname])]
        else:
            used[fname] = h
            out[h] = fname
    if errors:
        raise ValidationFailed(errors)
    if not out:
        raise ValidationFailed({"mapping": [text("Map at least one column to a field.", "请至少把一列对应到一个字段。")]})
    return out


def save_mapping(engine: Engine, entity: str, name: str, mapping: dict, actor_id: int | None) -> None:
    """Save (or replace) a named mapping for an entity."""
    name = (name or "").strip()[:100]
    if not name:
        raise ValidationFailed({"name": [text("Give the mapping a name.", "请为对应关系命名。")]})
    with write_transaction(engine) as conn:
        conn.execute(import_mapping.delete().where(import_mapping.c.entity == entity, import_mapping.c.name == name))
        conn.execute(import_mapping.insert().values(entity=entity, name=name, mapping=mapping, created_by=actor_id,
                                                    created_at=dt.datetime.now(dt.timezone.utc)))


def saved_mappings(engine: Engine, entity: str) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(import_mapping.c.name, import_mapping.c.mapping).where(import_mapping.c.entity == entity)
                            .order_by(import_mapping.c.name)).all()
    return {r.name: r.mapping for r in rows}


def apply_saved(saved: dict, headers: list[str]) -> dict[str, str | None]:
    """A saved mapping applied to a new file: the headers it knows keep their field, others stay unmapped."""
    return {h: saved.get(h) for h in headers}
