"""Card numbers (会员卡号): the number mode setting and the preset card pool.

Two modes, chosen per installation (``card_mode`` in ``membership_card_setting``):

- ``sequence`` (default): the member's ``card_no`` sequence field — prefix + zero-padded serial — numbered by the
  record service when the member is created.
- ``pool``: numbers prepared in advance (``membership_card_pool``), in batches (prefix, start, count, optional Luhn
  check digit) or one special number at a time. Approving an application takes the next free pool card in the
  approval's transaction. On PostgreSQL the draw is ``SELECT … FOR UPDATE SKIP LOCKED`` followed by a conditional
  ``UPDATE … WHERE status = 'free'``, so concurrent approvals never get the same card; on SQLite the write
  transaction already holds the database lock.

Special numbers (e.g. 88888888) are kept for hand-picked assignment: the automatic draw skips them.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, Column, Connection, Engine, Index, Integer, MetaData, String, Table, case, func, select

from crmkit.runtime.audit import record_event
from crmkit.runtime.db import write_transaction
from crmkit.runtime.errors import CrmkitError, ValidationFailed
from crmkit.runtime.i18n_text import text
from crmkit.runtime.storage.types import UTCDateTime

metadata = MetaData()
ID = BigInteger().with_variant(Integer, "sqlite")
MODES = ("sequence", "pool")

card_pool = Table(
    "membership_card_pool", metadata,
    Column("id", ID, primary_key=True),
    Column("card_no", String(40), nullable=False, unique=True),
    Column("batch", String(40)),
    Column("special", Boolean, nullable=False, default=False),
    Column("status", String(12), nullable=False, default="free"),  # free / used / void
    Column("member_id", BigInteger),
    Column("created_at", UTCDateTime()),
    Column("used_at", UTCDateTime()),
    Index("ix_membership_card_pool_free", "status", "special", "id"),
)

card_setting = Table(
    "membership_card_setting", metadata,
    Column("key", String(40), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("updated_at", UTCDateTime()),
    Column("updated_by", BigInteger),
)


class PoolEmpty(CrmkitError):
    code = "card_pool_empty"
    status = 409
    default_message = text("The card pool has no free card left.", "卡池中已没有可用的卡号。")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def card_mode(conn: Connection) -> str:
    value = conn.execute(select(card_setting.c.value).where(card_setting.c.key == "card_mode")).scalar()
    return value if value in MODES else "sequence"


def set_card_mode(engine: Engine, mode: str, *, actor_id: int | None) -> str:
    if mode not in MODES:
        raise ValidationFailed({"mode": [text("Choose 'sequence' or 'pool'.", "请选择“sequence”（生成卡号）或“pool”（卡池）。")]})
    with write_transaction(engine) as conn:
        before = card_mode(conn)
        if before == mode:
            return mode
        conn.execute(card_setting.delete().where(card_setting.c.key == "card_mode"))
        conn.execute(card_setting.insert().values(key="card_mode", value=mode, updated_at=utcnow(), updated_by=actor_id))
        record_event(conn, category="record", action="card_mode", actor_id=actor_id, entity="membership.member", changes={"card_mode": [before, mode]})
    return mode


def luhn_digit(number: str) -> str:
    """The Luhn check digit of the digits in ``number`` (letters are ignored)."""
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return str((10 - total % 10) % 10)


def batch_numbers(prefix: str, start: int, count: int, *, digits: int = 8, check_digit: bool = False) -> list[str]:
    out = []
    for n in range(start, start + count):
        body = f"{prefix}{n:0{digits}d}"
        out.append(body + luhn_digit(body) if check_digit else body)
    return out


def generate_batch(engine: Engine, *, prefix: str, start: int, count: int, digits: int = 8, check_digit: bool = False,
                   actor_id: int | None, batch: str | None = None) -> dict:
    """Add ``count`` numbers to the pool; numbers already in it are skipped. Returns {"created", "skipped", "batch"}."""
    errors = {}
    prefix = (prefix or "").strip()
    if len(prefix) > 12 or not all(c.isalnum() for c in prefix):
        errors["prefix"] = [text("Use up to 12 letters or digits.", "前缀最多 12 位字母或数字。")]
    if not isinstance(start, int) or start < 0:
        errors["start"] = [text("Enter a start number of 0 or more.", "起始号须为 0 或更大的整数。")]
    if not isinstance(count, int) or not 1 <= count <= 100_000:
        errors["count"] = [text("Enter a count from 1 to 100000.", "数量须在 1 到 100000 之间。")]
    if not isinstance(digits, int) or not 4 <= digits <= 16:
        errors["digits"] = [text("Use 4 to 16 digits.", "位数须在 4 到 16 之间。")]
    if errors:
        raise ValidationFailed(errors)
    numbers = batch_numbers(prefix, start, count, digits=digits, check_digit=check_digit)
    batch = batch or f"{prefix}{start}+{count}"
    now = utcnow()
    with write_transaction(engine) as conn:
        existing = set()
        for i in range(0, len(numbers), 500):
            chunk = numbers[i:i + 500]
            existing |= set(conn.execute(select(card_pool.c.card_no).where(card_pool.c.card_no.in_(chunk))).scalars())
        rows = [{"card_no": n, "batch": batch, "special": False, "status": "free", "created_at": now} for n in numbers if n not in existing]
        for i in range(0, len(rows), 500):
            conn.execute(card_pool.insert(), rows[i:i + 500])
        record_event(conn, category="record", action="card_pool_batch", actor_id=actor_id, entity="membership.member",
                     changes={"batch": batch, "prefix": prefix, "start": start, "count": count, "check_digit": check_digit, "created": len(rows)})
    return {"created": len(rows), "skipped": len(existing), "batch": batch}


def add_special(engine: Engine, card_no: str, *, actor_id: int | None) -> int:
    """One hand-picked number (a lucky number): in the pool, but never drawn automatically."""
    card_no = (card_no or "").strip()
    if not card_no or len(card_no) > 40 or not card_no.isalnum():
        raise ValidationFailed({"card_no": [text("Enter a card number of up to 40 letters or digits.", "请输入最多 40 位字母或数字的卡号。")]})
    with write_transaction(engine) as conn:
        if conn.execute(select(card_pool.c.id).where(card_pool.c.card_no == card_no)).first():
            raise ValidationFailed({"card_no": [text("{no} is already in the card pool.", "卡号 {no} 已在卡池中。", no=card_no)]})
        new_id = conn.execute(card_pool.insert().values(card_no=card_no, batch="special", special=True, status="free", created_at=utcnow())).inserted_primary_key[0]
        record_event(conn, category="record", action="card_pool_special", actor_id=actor_id, entity="membership.member", changes={"card_no": card_no})
    return int(new_id)


def draw(conn: Connection, *, card_no: str | None = None) -> str:
    """Take the next free (non-special) pool card — or the named free card — inside ``conn``'s transaction."""
    for _ in range(50):
        q = select(card_pool.c.id, card_pool.c.card_no).where(card_pool.c.status == "free")
        q = q.where(card_pool.c.card_no == card_no) if card_no else q.where(card_pool.c.special.is_(False)).order_by(card_pool.c.id).limit(1)
        if conn.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        row = conn.execute(q).first()
        if row is None:
            if card_no:
                raise ValidationFailed({"card_no": [text("{no} is not a free card in the pool.", "卡号 {no} 不是卡池中的可用卡。", no=card_no)]})
            raise PoolEmpty(text("The card pool has no free card left; add a batch of cards first.", "卡池中已没有可用的卡号，请先批量生成卡号。"))
        done = conn.execute(card_pool.update().where(card_pool.c.id == row.id, card_pool.c.status == "free").values(status="used", used_at=utcnow()))
        if done.rowcount == 1:
            return row.card_no
    raise PoolEmpty(text("Could not take a card from the pool; try again.", "未能从卡池取到卡号，请重试。"))


def bind(conn: Connection, card_no: str, member_id: int) -> None:
    conn.execute(card_pool.update().where(card_pool.c.card_no == card_no).values(member_id=member_id))


def pool_counts(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(card_pool.c.status, func.count()).group_by(card_pool.c.status)).all()
    return {"free": 0, "used": 0, "void": 0, **{r[0]: int(r[1]) for r in rows}}


def may_manage_cards(services, actor) -> None:
    """Card number settings and the pool: a Membership Manager (directly or through a post) or an administrator."""
    from crmkit.runtime.errors import PermissionDenied
    from crmkit.runtime.org.grants import resolve_grants

    if actor.is_admin:
        return
    services.policy.check(actor, services.store.catalog().entity("membership.member"), "update")
    roles = set()
    if actor.id is not None:
        with services.engine.connect() as conn:
            roles = set(resolve_grants(conn, actor.id).role_names)
    if "Membership Manager" not in roles:
        raise PermissionDenied(text("Only a membership manager or an administrator can manage card numbers.", "只有会员主管或管理员可以管理卡号。"))


def recent_batches(conn: Connection, limit: int = 20) -> list[dict]:
    q = (select(card_pool.c.batch, func.count().label("cards"), func.min(card_pool.c.card_no).label("first"), func.max(card_pool.c.card_no).label("last"),
                func.sum(case((card_pool.c.status == "used", 1), else_=0)).label("used"), func.max(card_pool.c.created_at).label("created_at"))
         .group_by(card_pool.c.batch).order_by(func.max(card_pool.c.id).desc()).limit(limit))
    return [dict(r._mapping) for r in conn.execute(q)]
