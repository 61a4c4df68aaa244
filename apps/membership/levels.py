"""Member levels: automatic upgrade/downgrade from thresholds, manual changes with a reason, and the level history.

A level's thresholds are ``upgrade_points`` (the member's upgrade-point balance in the ledger), ``min_spend``
(paid orders less refunds) and ``min_referrals`` (members whose ``referred_by`` is this member); a member
qualifies for a level when every threshold the level sets is met, and gets the highest level they qualify for.

When it runs:
- after every order write (a record listener in the order's transaction, after the points are posted): only
  upgrades, so a manual level holds until the period ends;
- the period-end job ``membership.levels_evaluate``: upgrades and downgrades for every member;
- after a manual upgrade-point adjustment.

Every change writes the member's ``level`` and a ``membership.level_change`` row in one transaction through the
record service. Evaluation is idempotent: a member already at their level gets no write and no history row.
"""
from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.db import write_transaction
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.i18n_text import text

from .ledger import tables as lt

MEMBER, LEVEL, CHANGE = "membership.member", "membership.level", "membership.level_change"
D = decimal.Decimal
EVALUATE_JOB = "membership.levels_evaluate"


@dataclass(frozen=True)
class Metrics:
    upgrade_points: int
    spend: D
    referrals: int


@dataclass(frozen=True)
class Level:
    id: int
    name: str
    value: int
    upgrade_points: int | None
    min_spend: D | None
    min_referrals: int | None

    def qualifies(self, m: Metrics) -> bool:
        return ((self.upgrade_points is None or m.upgrade_points >= self.upgrade_points)
                and (self.min_spend is None or m.spend >= self.min_spend)
                and (self.min_referrals is None or m.referrals >= self.min_referrals))


def target_level(levels: list[Level], m: Metrics) -> Level | None:
    """The highest level whose thresholds ``m`` meets (None when the member meets none)."""
    fit = [lv for lv in levels if lv.qualifies(m)]
    return max(fit, key=lambda lv: (lv.value, lv.id)) if fit else None


def _tables(services_or_tables) -> dict:
    if isinstance(services_or_tables, dict):
        return services_or_tables
    s = services_or_tables
    return s.records.table_cache.tables(s.store.catalog())


def load_levels(conn: Connection, tables: dict) -> list[Level]:
    lv = tables[LEVEL]
    rows = conn.execute(select(lv).where(lv.c.deleted_at.is_(None)).order_by(lv.c.level_value, lv.c.id)).mappings()
    return [Level(r["id"], r["name"], int(r["level_value"] or 0), r["upgrade_points"],
                  None if r["min_spend"] is None else D(str(r["min_spend"])), r["min_referrals"]) for r in rows]


def metrics(conn: Connection, tables: dict, member_id: int) -> Metrics:
    acc = lt.account
    pts = conn.execute(select(acc.c.balance).where(acc.c.kind == "wallet", acc.c.member_id == member_id, acc.c.currency == "upgrade")).scalar()
    o = tables["membership.order"]
    spend = conn.execute(select(func.coalesce(func.sum(o.c.amount - func.coalesce(o.c.refunded_amount, 0)), 0))
                         .where(o.c.member == member_id, o.c.payment_status == "paid", o.c.deleted_at.is_(None))).scalar()
    m = tables[MEMBER]
    refs = conn.execute(select(func.count()).select_from(m).where(m.c.referred_by == member_id, m.c.deleted_at.is_(None))).scalar()
    return Metrics(int(pts or 0), D(str(spend or 0)), int(refs or 0))


def _why(level: Level | None, m: Metrics, up: bool) -> str:
    parts = [f"upgrade points {m.upgrade_points}", f"spend {m.spend:.2f}", f"referrals {m.referrals}"]
    head = "Automatic upgrade" if up else "Automatic downgrade"
    return f"{head} to {level.name if level else '—'}: {', '.join(parts)}"


def evaluate_in(conn: Connection, records, tables: dict, member_id: int, *, allow_down: bool, actor: Actor = SYSTEM,
                now: dt.datetime | None = None) -> int | None:
    """Evaluate one member inside the caller's write transaction; returns the new level id when it changed, else None."""
    m = tables[MEMBER]
    row = conn.execute(select(m.c.id, m.c.level, m.c.deleted_at).where(m.c.id == member_id)).first()
    if row is None or row.deleted_at is not None:
        return None
    levels = load_levels(conn, tables)
    if not levels:
        return None
    by_id = {lv.id: lv for lv in levels}
    current = by_id.get(row.level)
    met = metrics(conn, tables, member_id)
    target = target_level(levels, met)
    if target is None or (current is not None and target.id == current.id):
        return None
    up = current is None or target.value > current.value
    if not up and not allow_down:
        return None
    _write_change(conn, records, member_id, current.id if current else None, target.id, up, "auto", _why(target, met, up), actor, now)
    return target.id


def _write_change(conn, records, member_id, from_id, to_id, up: bool, source: str, reason: str, actor: Actor, now) -> None:
    system = Actor(id=actor.id, username=actor.username, is_admin=True, locale=actor.locale)  # the level rule, not the clerk, authorizes it
    records.update_within(conn, MEMBER, member_id, {"level": to_id}, system)
    records.create_within(conn, CHANGE, {"member": member_id, "from_level": from_id, "to_level": to_id, "direction": "up" if up else "down",
                                         "source": source, "reason": reason[:500], "changed_at": (now or _now()).isoformat()}, system)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def evaluate(services, member_id: int, *, allow_down: bool = True, actor: Actor = SYSTEM, now: dt.datetime | None = None) -> int | None:
    with write_transaction(services.engine) as conn:
        return evaluate_in(conn, services.records, _tables(services), member_id, allow_down=allow_down, actor=actor, now=now)


def evaluate_all(services, *, allow_down: bool = True, actor: Actor = SYSTEM, now: dt.datetime | None = None, progress=None) -> dict:
    """The period-end evaluation of every member; one transaction per member, so a re-run changes only what is still off."""
    m = _tables(services)[MEMBER]
    with services.engine.connect() as c:
        ids = c.execute(select(m.c.id).where(m.c.deleted_at.is_(None)).order_by(m.c.id)).scalars().all()
    changed = 0
    for n, member_id in enumerate(ids, 1):
        if evaluate(services, member_id, allow_down=allow_down, actor=actor, now=now) is not None:
            changed += 1
        if progress is not None and (n % 100 == 0 or n == len(ids)):
            progress(n, len(ids), None)
    return {"members": len(ids), "changed": changed}


def on_order_written(conn: Connection, written) -> None:
    """After an order's points are posted (this listener is registered after the earning one): upgrade if now due."""
    order = conn.execute(select(written.table.c.member).where(written.table.c.id == written.record_id)).first()
    if order is not None and order.member is not None:
        evaluate_in(conn, written.records, written.tables, order.member, allow_down=False, actor=written.actor)


def set_level(services, member_id: int, level_id: int | None, reason: str, actor: Actor, *, now: dt.datetime | None = None) -> bool:
    """A manual level change (needs update access to the member and a reason); returns False when the level is unchanged."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed({"reason": [text("Give a reason for changing the level.", "请填写调整等级的原因。")]})
    member = services.queries.get(MEMBER, member_id, actor)
    services.policy.check(actor, services.store.catalog().entity(MEMBER), "update")
    tables = _tables(services)
    with write_transaction(services.engine) as conn:
        levels = {lv.id: lv for lv in load_levels(conn, tables)}
        if level_id is not None and level_id not in levels:
            raise ValidationFailed({"level": [text("Choose a level.", "请选择等级。")]})
        current = member.get("level")
        if current == level_id:
            return False
        old, new = levels.get(current), levels.get(level_id)
        up = new is not None and (old is None or new.value > old.value)
        _write_change(conn, services.records, member_id, current, level_id, up, "manual", reason, actor, now)
    return True


def evaluate_job(ctx, payload: dict) -> dict:
    return evaluate_all(ctx.services, allow_down=payload.get("allow_down", True), progress=ctx.progress)
