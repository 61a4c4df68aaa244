"""Searching the audit log for the admin page: validated filters, newest first, keyset pages by ``seq``."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, or_, select

from ..errors import BadQuery
from ..storage import fab_tables
from ..storage import platform_tables as pt
from .service import CATEGORIES

PAGE_SIZE = 50


@dataclass(frozen=True)
class AuditFilter:
    q: str = ""
    category: str = ""
    actor: str = ""
    entity: str = ""
    record_id: int | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None

    @classmethod
    def from_args(cls, args) -> "AuditFilter":
        """Parse query-string arguments; anything unusable is a BadQuery that says what to send."""
        q = (args.get("q") or "").strip()
        if len(q) > 100 or "\x00" in q:
            raise BadQuery("Search text is at most 100 characters.")
        category = (args.get("category") or "").strip()
        if category and category not in CATEGORIES:
            raise BadQuery(f"Unknown category {category!r}; choose one of {', '.join(CATEGORIES)}.")
        rid = (args.get("record_id") or "").strip()
        if rid and not (rid.isdigit() and 0 < int(rid) < 2**63):
            raise BadQuery("Record id must be a positive whole number.")
        return cls(q=q, category=category, actor=(args.get("actor") or "").strip()[:100], entity=(args.get("entity") or "").strip()[:100],
                   record_id=int(rid) if rid else None, date_from=_date(args.get("from"), "From"), date_to=_date(args.get("to"), "To"))


@dataclass
class AuditPage:
    rows: list[dict] = field(default_factory=list)
    next_before: int | None = None


def search_entries(conn: Connection, flt: AuditFilter, *, timezone: str, before: int | None = None, limit: int = PAGE_SIZE) -> AuditPage:
    a, u = pt.audit, fab_tables.ab_user
    q = select(a, u.c.username).select_from(a.outerjoin(u, u.c.id == a.c.actor_id))
    if before is not None:
        q = q.where(a.c.id < before)
    if flt.category:
        q = q.where(a.c.category == flt.category)
    if flt.entity:
        q = q.where(a.c.entity == flt.entity)
    if flt.record_id is not None:
        q = q.where(a.c.record_id == flt.record_id)
    if flt.actor:
        q = q.where(or_(u.c.username == flt.actor, a.c.subject == flt.actor))
    tz = ZoneInfo(timezone)
    if flt.date_from:
        q = q.where(a.c.at >= dt.datetime.combine(flt.date_from, dt.time(), tz))
    if flt.date_to:
        q = q.where(a.c.at < dt.datetime.combine(flt.date_to + dt.timedelta(days=1), dt.time(), tz))
    if flt.q:
        like = "%" + flt.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        q = q.where(or_(a.c.action.ilike(like, escape="\\"), a.c.subject.ilike(like, escape="\\"), a.c.entity.ilike(like, escape="\\"),
                        a.c.ip.ilike(like, escape="\\"), a.c.request_id.ilike(like, escape="\\"), u.c.username.ilike(like, escape="\\")))
    rows = [dict(r) for r in conn.execute(q.order_by(a.c.id.desc()).limit(limit + 1)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(rows=rows, next_before=rows[-1]["id"] if more and rows else None)


def _date(raw, label: str) -> dt.date | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise BadQuery(f"{label} date {raw[:20]!r} is not a date; use YYYY-MM-DD.") from None
