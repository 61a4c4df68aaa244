"""The ``crmkit_audit`` blueprint: the searchable audit log page for administrators."""
from __future__ import annotations

import json
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, render_template, request, url_for

from ..db import read_transaction
from ..errors import BadQuery, PermissionDenied
from ..i18n_text import text
from ..meta.catalog import Catalog
from ..permissions.masking import mask_value
from ..web.actors import current_actor
from ..web.i18n import current_locale
from .search import AuditFilter, search_entries
from .service import CATEGORIES

audit_blueprint = Blueprint("crmkit_audit", __name__, url_prefix="/admin/audit")

ADMINS_ONLY = text("Only administrators can read the audit log.", "只有管理员可以查看审计日志。")


def require_admin():
    actor = current_actor()
    if actor is None or not actor.is_admin:
        raise PermissionDenied(ADMINS_ONLY)
    return actor


@audit_blueprint.route("/")
def audit_log():
    actor = require_admin()
    services = current_app.extensions["crmkit"]
    query_error = None
    try:
        flt = AuditFilter.from_args(request.args)
        before = _before(request.args.get("before"))
    except BadQuery as exc:
        flt, before, query_error = AuditFilter(), None, exc.message
    with read_transaction(services.engine) as conn:
        page = search_entries(conn, flt, timezone=services.settings.timezone, before=before)
    catalog = services.store.catalog()
    locale = current_locale()
    tz = ZoneInfo(services.settings.timezone)
    rows = [_present(r, catalog, services.policy, actor, locale, tz) for r in page.rows]
    args = {k: v for k, v in request.args.items() if k != "before" and v}
    next_url = url_for("crmkit_audit.audit_log", **args, before=page.next_before) if page.next_before else None
    first_url = url_for("crmkit_audit.audit_log", **args) if before else None
    ctx = dict(rows=rows, flt=flt, categories=CATEGORIES, next_url=next_url, first_url=first_url, query_error=query_error,
               entities=sorted(catalog.entities), status=400 if query_error else 200)
    template = "crmkit/audit/_region.html" if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "audit-region" else "crmkit/audit/log.html"
    return render_template(template, **ctx), ctx["status"]


def _before(raw) -> int | None:
    if raw in (None, ""):
        return None
    if not str(raw).isdigit() or not 0 < int(raw) < 2**63:
        raise BadQuery("The page link is not valid; start again from the first page.")
    return int(raw)


def _present(r: dict, catalog: Catalog, policy, actor, locale: str, tz) -> dict:
    """One entry for display: local time, target, and details with field labels (masked fields masked)."""
    entity = catalog.entities.get(r["entity"]) if r["entity"] else None
    details: list[tuple[str, str]] = []
    changes = r["changes"] or {}
    if r["category"] == "record" and entity is not None:
        readable = set(policy.readable_fields(actor, entity))
        masked = policy.masks(actor, entity)
        unmaskable = policy.unmaskable_fields(actor, entity)
        for name, change in changes.items():
            if name not in readable:
                continue
            f = entity.field_map.get(name)
            label = f.label.get(locale) if f else name
            if name in masked and name not in unmaskable and isinstance(change, list):
                change = [mask_value(masked[name], v) for v in change]
            details.append((label, _change_text(change)))
    else:
        details = [(k, _compact(v)) for k, v in changes.items()]
    target = ""
    if r["entity"]:
        label = entity.label.get(locale) if entity is not None else r["entity"]
        target = f"{label} #{r['record_id']}" if r["record_id"] is not None else label
    return {**r, "local_at": r["at"].astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"), "target": target, "details": details,
            "record_url": url_for("crmkit_web.entity_detail", entity_key=entity.key, record_id=r["record_id"])
            if entity is not None and r["record_id"] is not None and not entity.is_child else None}


def _change_text(change) -> str:
    if isinstance(change, list) and len(change) == 2:
        return f"{_compact(change[0])} → {_compact(change[1])}"
    return _compact(change)


def _compact(value) -> str:
    out = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return out if len(out) <= 200 else out[:199] + "…"
