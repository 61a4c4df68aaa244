"""The manual-adjustment approval threshold comes from the active points plan (default 1000 points)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

DEFAULT_THRESHOLD = 1000


def approval_threshold(services, day: dt.date | None = None) -> int:
    catalog = services.store.catalog()
    if "membership.points_plan" not in catalog.entities:
        return DEFAULT_THRESHOLD
    p = services.records.table_cache.tables(catalog)["membership.points_plan"]
    day = day or dt.date.today()
    with services.engine.connect() as c:
        value = c.execute(select(p.c.approval_threshold).where(p.c.deleted_at.is_(None), p.c.active.is_(True), p.c.starts_on <= day, p.c.ends_on >= day)
                          .order_by(p.c.starts_on.desc(), p.c.id.desc()).limit(1)).scalar()
    return DEFAULT_THRESHOLD if value is None else int(value)
