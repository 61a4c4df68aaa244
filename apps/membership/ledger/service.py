"""LedgerService: earn, confirm, redeem, expire, reverse and adjust points — the only writer of the ledger tables.

Every posting runs in one write transaction (``BEGIN IMMEDIATE`` on SQLite; on PostgreSQL the member's
account row is locked with ``SELECT … FOR UPDATE``) that: locks the member's account, returns the existing
entry if the idempotency key was already used, checks the balance, appends the entry and its lines (summing to
zero), moves the materialised balances and the FIFO lots, and writes an audit entry and an outbox event. A
caller that is already in a write transaction (a record listener, a redemption) passes ``conn=`` to post in it.
"""
from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Iterator

from sqlalchemy import Connection, Engine, and_, bindparam, func, null, select
from sqlalchemy.exc import IntegrityError

from crmkit.runtime.actor import Actor
from crmkit.runtime.audit import record_event
from crmkit.runtime.audit.service import pending_entry
from crmkit.runtime.db import write_transaction
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.i18n_text import text
from crmkit.runtime.storage import platform_tables as pt

from . import tables as t
from ..card_guard import CARD_CHECK, MemberCheck
from .append_pg import AUDIT_COLUMNS, NEXT_ENTRY_ID, KeyAlreadyPosted, append_statement
from .errors import InsufficientPoints, LedgerRefused

MEMBER_ENTITY = "membership.member"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class Posted:
    entry_id: int
    amount: int  # signed effect on the member
    created: bool  # False: the idempotency key was already used and nothing new was posted


@dataclass(frozen=True)
class _Hold:
    """What an earn or redeem knows once the member's account is locked."""
    account: int
    balance: int
    counter: int  # the counter account the posting's other line goes to
    entry_id: int | None  # PostgreSQL: the new entry's id, drawn with the lock
    found: Posted | None  # the entry already posted under the key, when known by now


@dataclass(frozen=True)
class AdjustmentResult:
    adjustment_id: int
    status: str  # applied (under the threshold), pending (waits for approval)
    posted: Posted | None


def _insert_ignore(conn: Connection, table, values: dict, keys: list[str]) -> None:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    conn.execute(insert(table).values(**values).on_conflict_do_nothing(index_elements=keys))


# Built once: these run for every posting.
_LOCK_ACCOUNT = (select(t.account.c.id, t.account.c.balance)
                 .where(t.account.c.kind == bindparam("kind"), t.account.c.member_id == bindparam("member_id"), t.account.c.currency == bindparam("currency"))
                 .with_for_update())
_COUNTER = select(t.account.c.id).where(t.account.c.kind == bindparam("counter"), t.account.c.member_id == 0,
                                         t.account.c.currency == bindparam("currency")).scalar_subquery()
# The member's account locked and the counter account's id read in one round trip (earn and redeem, the hot postings).
_LOCK_ACCOUNT_AND_COUNTER = _LOCK_ACCOUNT.add_columns(_COUNTER)
_NEXT_ENTRY_ID = select(NEXT_ENTRY_ID)
_MOVE_BALANCE = (t.account.update().where(t.account.c.id == bindparam("b_acc"), t.account.c.balance.is_not(None))
                 .values(balance=t.account.c.balance + bindparam("b_points"), updated_at=bindparam("b_now")))
_FIND_KEY = select(t.entry.c.id, t.entry.c.amount).where(t.entry.c.idempotency_key == bindparam("key"))
_INSERT_ENTRY = t.entry.insert()
_INSERT_LINES = t.line.insert()
_INSERT_LOT = t.lot.insert()
_INSERT_OUTBOX = pt.outbox.insert()
_OPEN_LOTS = select(t.lot.c.id, t.lot.c.remaining).where(t.lot.c.account_id == bindparam("acc"), t.lot.c.remaining > 0)
_OPEN_LOTS_OF_ENTRY = _OPEN_LOTS.where(t.lot.c.entry_id == bindparam("entry"))
_OPEN_LOTS_AFTER = _OPEN_LOTS.where(t.lot.c.id > bindparam("after")).order_by(t.lot.c.id).limit(64)
_TAKE_FROM_LOT = t.lot.update().where(t.lot.c.id == bindparam("b_lot")).values(remaining=t.lot.c.remaining - bindparam("b_n"))


class LedgerService:
    def __init__(self, engine: Engine, *, approval_threshold: int = 1000, clock: Callable[[], dt.datetime] = utcnow,
                 member_check: MemberCheck | None = CARD_CHECK):
        self.engine = engine
        self.member_check = member_check  # refuses earning/redeeming for a member, e.g. a lost card (card_guard.py)
        # PostgreSQL, earn and redeem: the account locked, the counter account's id, the new entry's id and the member's
        # status in one round trip; the key is checked by the append itself (append_pg.py). Built once.
        self._hold_pg = _LOCK_ACCOUNT_AND_COUNTER.add_columns(NEXT_ENTRY_ID, null() if member_check is None else member_check.status)
        # SQLite (and a member's first posting): the key looked for and the member's status read in one statement.
        self._find_key_and_status = None if member_check is None else select(
            select(t.entry.c.id).where(t.entry.c.idempotency_key == bindparam("key")).scalar_subquery(),
            select(t.entry.c.amount).where(t.entry.c.idempotency_key == bindparam("key")).scalar_subquery(),
            member_check.status)
        self.approval_threshold = approval_threshold
        self.clock = clock

    # -- public operations ---------------------------------------------------------------------------
    def earn(self, member_id: int, points: int, *, key: str, actor: Actor, currency: str = "reward", source_type: str = "manual",
             source_id: str | int | None = None, expires_at: dt.datetime | None = None, pending: bool = False, memo: str | None = None,
             details: dict | None = None, conn: Connection | None = None, counter: str = "liability") -> Posted:
        """Credit ``points`` to the wallet (a new lot), or to the pending account when ``pending`` (purchases before payment).

        ``counter`` is the counter account the points come from: ``liability`` (the club) or ``merchant`` (earned at a
        partner merchant; which merchant is in the entry's source and details)."""
        _positive(points)
        _currency(currency)
        _counter(counter, ("liability", "merchant"))

        def work(c: Connection) -> Posted:
            side = "pending" if pending else "wallet"
            hold = self._hold(c, side, member_id, currency, counter, key)
            if hold.found:
                return hold.found
            try:
                entry_id = self._append(c, entry_id=hold.entry_id, key=key, kind="earn_pending" if pending else "earn", currency=currency,
                                        member_id=member_id, amount=points, lines=[(hold.account, points), (hold.counter, -points)],
                                        source_type=source_type, source_id=source_id, memo=memo,
                                        details={**(details or {}), "expires_at": expires_at.isoformat() if expires_at else None}, actor=actor,
                                        lot=None if pending else (hold.account, points, expires_at))
            except KeyAlreadyPosted:
                return self._posted(c, key)
            return Posted(entry_id, points, True)

        return self._run(conn, key, work)

    def confirm(self, pending_entry_id: int, *, actor: Actor, expires_at: dt.datetime | None = None, conn: Connection | None = None) -> Posted:
        """Move a pending earn into the wallet once its payment is confirmed (idempotent per pending entry)."""
        key = f"confirm:{pending_entry_id}"

        def work(c: Connection) -> Posted:
            orig = self._entry(c, pending_entry_id)
            if orig["kind"] != "earn_pending":
                raise LedgerRefused(text("Only pending points can be confirmed.", "只有待生效的积分可以确认。"))
            member, cur = orig["member_id"], orig["currency"]
            wallet, _ = self._lock(c, "wallet", member, cur)
            pend, pend_bal = self._lock(c, "pending", member, cur)
            found = self._existing(c, key)
            if found:
                return found
            amount = orig["amount"] - self.reversed_points(c, pending_entry_id)
            if amount <= 0 or pend_bal < amount:
                raise LedgerRefused(text("These pending points were already reversed.", "这笔待生效积分已被冲销。"))
            exp = expires_at or _parse((orig["details"] or {}).get("expires_at"))
            entry_id = self._append(c, key=key, kind="confirm", currency=cur, member_id=member, amount=0, lines=[(wallet, amount), (pend, -amount)],
                                    source_type=orig["source_type"], source_id=orig["source_id"], reversal_of=None, memo=None,
                                    details={"pending_entry": pending_entry_id, "points": amount}, actor=actor, lot=(wallet, amount, exp))
            return Posted(entry_id, 0, True)

        return self._run(conn, key, work)

    def redeem(self, member_id: int, points: int, *, key: str, actor: Actor, source_type: str = "redemption", source_id: str | int | None = None,
               memo: str | None = None, conn: Connection | None = None, within: Callable[[Connection, int], None] | None = None,
               counter: str = "redeemed", details: dict | None = None) -> Posted:
        """Spend reward points, oldest lots first. ``within(conn, entry_id)`` runs in the same transaction (stock, limits).
        ``counter``: ``redeemed`` (the club's catalogue) or ``merchant`` (a benefit at a partner merchant)."""
        _positive(points)
        _counter(counter, ("redeemed", "merchant"))

        def work(c: Connection) -> Posted:
            hold = self._hold(c, "wallet", member_id, "reward", counter, key)
            if hold.found:
                return hold.found
            wallet, bal = hold.account, hold.balance
            if bal < points:
                found = self._existing(c, key)  # a replay returns its first result, whatever the balance is now
                if found:
                    return found
                raise InsufficientPoints(text("Not enough points: the balance is {balance}, {points} are needed.", "积分不足：余额 {balance}，需要 {points}。",
                                              balance=bal, points=points), details={"balance": bal, "needed": points})
            try:
                entry_id = self._append(c, entry_id=hold.entry_id, key=key, kind="redeem", currency="reward", member_id=member_id, amount=-points,
                                        lines=[(wallet, -points), (hold.counter, points)], source_type=source_type, source_id=source_id, memo=memo,
                                        details=dict(details or {}), actor=actor, fifo=(wallet, points))
            except KeyAlreadyPosted:
                return self._posted(c, key)
            if within is not None:
                within(c, entry_id)
            return Posted(entry_id, -points, True)

        return self._run(conn, key, work)

    def reverse(self, entry_id: int, *, key: str, actor: Actor, points: int | None = None, memo: str | None = None,
                conn: Connection | None = None) -> Posted:
        """Post a compensating entry for ``points`` of an entry (all that is left to reverse by default).

        A reversal that would take a wallet below zero takes what is there; the rest is recorded as ``shortfall``
        in the entry's details (and counts as reversed, so a later partial refund does not claim it again)."""
        def work(c: Connection) -> Posted:
            orig = self._entry(c, entry_id)
            if orig["kind"] in ("reverse", "expire", "confirm", "carry", "uncarry"):
                raise LedgerRefused(text("A {kind} entry cannot be reversed.", "“{kind}”类分录不能冲销。", kind=orig["kind"]))
            member, cur = orig["member_id"], orig["currency"]
            acc, bal = self._lock(c, "wallet", member, cur)  # wallet before pending, the order confirm() locks them in
            lot_entry, in_wallet = entry_id, True
            if orig["kind"] == "earn_pending":
                pend, pend_bal = self._lock(c, "pending", member, cur)
                confirmed = self._existing(c, f"confirm:{entry_id}")
                if confirmed:  # the points moved to the wallet: take them back from there, the confirmation's lot first
                    lot_entry = confirmed.entry_id
                else:
                    acc, bal, in_wallet = pend, pend_bal, False
            found = self._existing(c, key)
            if found:
                return found
            left = abs(orig["amount"]) - self.reversed_points(c, entry_id)
            want = left if points is None else points
            if want <= 0 or want > left:
                raise LedgerRefused(text("Only {left} points of this entry are left to reverse.", "该分录只剩 {left} 积分可冲销。", left=max(left, 0)))
            counter_line = c.execute(select(t.line.c.account_id).select_from(t.line.join(t.account, t.account.c.id == t.line.c.account_id))
                                     .where(t.line.c.entry_id == entry_id, t.account.c.member_id == 0)).scalar_one()
            details: dict = {"points": want}
            used: list[list[int]] = []
            if orig["amount"] > 0:  # the member got points: take them back (FIFO, this entry's lot first)
                take = min(want, bal)
                details["shortfall"] = want - take
                if take and in_wallet:
                    details["lots"] = used = self._consume(c, acc, take, first_entry=lot_entry)
                amount, lines = -take, [(acc, -take), (counter_line, take)]
            else:  # the member spent points: give them back, expiring like the earliest lot they came from
                amount, lines = want, [(acc, want), (counter_line, -want)]
            lot = (acc, amount, self._earliest_expiry(c, (orig["details"] or {}).get("lots") or [])) if amount > 0 else None
            rid = self._append(c, key=key, kind="reverse", currency=cur, member_id=member, amount=amount, lines=lines, source_type=orig["source_type"],
                               source_id=orig["source_id"], reversal_of=entry_id, memo=memo, details=details, actor=actor, lot=lot, taken=used)
            return Posted(rid, amount, True)

        return self._run(conn, key, work)

    def expire_due(self, now: dt.datetime | None = None, *, actor: Actor | None = None, batch: int = 1000) -> int:
        """Expire every lot whose ``expires_at`` has passed (run by a periodic job); returns how many entries were posted."""
        from crmkit.runtime.actor import SYSTEM

        now = now or self.clock()
        actor = actor or SYSTEM
        posted = 0
        while True:
            with self.engine.connect() as c:
                due = c.execute(select(t.lot.c.account_id, t.lot.c.id).where(t.lot.c.expires_at <= now, t.lot.c.remaining > 0)
                                .order_by(t.lot.c.account_id, t.lot.c.id).limit(batch)).all()
            if not due:
                return posted
            for account_id in dict.fromkeys(r.account_id for r in due):
                posted += self._expire_account(account_id, now, actor)

    def carry(self, member_id: int, lot_ids: list[int], new_expiry: dt.datetime | None, *, key: str, actor: Actor, plan_id: int | None = None,
              conn: Connection | None = None) -> Posted:
        """Carry-over (结转): move what is left of ``lot_ids`` into one lot expiring at ``new_expiry``.

        No points change hands, so the entry has no lines (it sums to zero trivially); it records which lots moved."""
        def work(c: Connection) -> Posted:
            wallet, _ = self._lock(c, "wallet", member_id, "reward")
            found = self._existing(c, key)
            if found:
                return found
            lots = c.execute(select(t.lot.c.id, t.lot.c.remaining, t.lot.c.expires_at).where(
                t.lot.c.account_id == wallet, t.lot.c.id.in_(lot_ids), t.lot.c.remaining > 0).order_by(t.lot.c.id)).all()
            moved = sum(int(lot.remaining) for lot in lots)
            if not moved:
                raise LedgerRefused(text("There are no points left to carry over.", "没有可结转的积分。"))
            for lot in lots:
                c.execute(t.lot.update().where(t.lot.c.id == lot.id).values(remaining=0))
            entry_id = self._append(c, key=key, kind="carry", currency="reward", member_id=member_id, amount=0, lines=[], source_type="plan",
                                    source_id=plan_id, memo=None, actor=actor, details={
                                        "points": moved, "lots": [[lot.id, int(lot.remaining)] for lot in lots],
                                        "from_expiry": [lot.expires_at.isoformat() if lot.expires_at else None for lot in lots],
                                        "expires_at": new_expiry.isoformat() if new_expiry else None}, lot=(wallet, moved, new_expiry))
            return Posted(entry_id, 0, True)

        return self._run(conn, key, work)

    def uncarry(self, carry_entry_id: int, *, key: str, actor: Actor, conn: Connection | None = None) -> Posted:
        """Reverse a carry-over (反结转): what is left of the carried lot goes back to the lots' original expiry."""
        def work(c: Connection) -> Posted:
            orig = self._entry(c, carry_entry_id)
            if orig["kind"] != "carry":
                raise LedgerRefused(text("Only a carry-over can be reversed this way.", "只有结转分录可以反结转。"))
            wallet, _ = self._lock(c, "wallet", orig["member_id"], "reward")
            found = self._existing(c, key)
            if found:
                return found
            if self.reversed_points(c, carry_entry_id):
                raise LedgerRefused(text("This carry-over was already reversed.", "该结转已反结转。"))
            lot = c.execute(select(t.lot.c.id, t.lot.c.remaining).where(t.lot.c.entry_id == carry_entry_id)).one()
            back = int(lot.remaining)
            old = [e for e in (orig["details"] or {}).get("from_expiry", []) if e]
            expiry = min(_parse(e) for e in old) if old else None
            c.execute(t.lot.update().where(t.lot.c.id == lot.id).values(remaining=0))
            entry_id = self._append(c, key=key, kind="uncarry", currency="reward", member_id=orig["member_id"], amount=0, lines=[],
                                    source_type="plan", source_id=orig["source_id"], reversal_of=carry_entry_id, memo=None, actor=actor,
                                    details={"points": (orig["details"] or {}).get("points", back), "restored": back,
                                             "expires_at": expiry.isoformat() if expiry else None},
                                    lot=(wallet, back, expiry) if back else None)
            return Posted(entry_id, 0, True)

        return self._run(conn, key, work)

    def request_adjustment(self, member_id: int, points: int, reason: str, *, actor: Actor, currency: str = "reward") -> AdjustmentResult:
        """A manual adjustment (signed). Up to ``approval_threshold`` points it posts at once; above, it waits for another user."""
        _currency(currency)
        reason = (reason or "").strip()
        errors = {}
        if not reason:
            errors["reason"] = [text("Give a reason for the adjustment.", "请填写调整原因。")]
        if not isinstance(points, int) or isinstance(points, bool) or points == 0:
            errors["points"] = [text("Enter a whole number of points other than 0.", "请输入不为 0 的整数积分。")]
        if errors:
            raise ValidationFailed(errors)
        now = self.clock()
        with write_transaction(self.engine) as c:
            adj = c.execute(t.adjustment.insert().values(member_id=member_id, currency=currency, amount=points, reason=reason[:500], status="pending",
                                                         requested_by=actor.id, requested_at=now)).inserted_primary_key[0]
            record_event(c, category="record", action="points.adjust_request", actor_id=actor.id, entity=MEMBER_ENTITY, record_id=member_id,
                         changes={"adjustment": adj, "points": points, "currency": currency, "reason": reason[:500]})
            if abs(points) <= self.approval_threshold:
                posted = self._apply_adjustment(c, adj, actor)
                return AdjustmentResult(adj, "applied", posted)
        return AdjustmentResult(adj, "pending", None)

    def approve_adjustment(self, adjustment_id: int, *, actor: Actor) -> Posted:
        with write_transaction(self.engine) as c:
            row = self._pending_adjustment(c, adjustment_id)
            if row["requested_by"] == actor.id:
                raise LedgerRefused(text("Another user must approve this adjustment.", "该调整须由另一位用户审批。"))
            return self._apply_adjustment(c, adjustment_id, actor)

    def reject_adjustment(self, adjustment_id: int, *, actor: Actor) -> None:
        with write_transaction(self.engine) as c:
            row = self._pending_adjustment(c, adjustment_id)
            c.execute(t.adjustment.update().where(t.adjustment.c.id == adjustment_id)
                      .values(status="rejected", decided_by=actor.id, decided_at=self.clock()))
            record_event(c, category="record", action="points.adjust_reject", actor_id=actor.id, entity=MEMBER_ENTITY, record_id=row["member_id"],
                         changes={"adjustment": adjustment_id})

    # -- reads ------------------------------------------------------------------------------------------
    def balances(self, member_id: int, conn: Connection | None = None) -> dict[str, dict[str, int]]:
        """{currency: {"wallet": n, "pending": n}} (zeros for accounts not opened yet)."""
        out = {cur: {k: 0 for k in t.MEMBER_KINDS} for cur in t.CURRENCIES}
        with _maybe(self.engine, conn) as c:
            for r in c.execute(select(t.account.c.kind, t.account.c.currency, t.account.c.balance).where(t.account.c.member_id == member_id)):
                out[r.currency][r.kind] = int(r.balance or 0)
        return out

    def history(self, member_id: int, *, limit: int = 100, conn: Connection | None = None) -> list[dict]:
        with _maybe(self.engine, conn) as c:
            rows = c.execute(select(t.entry).where(t.entry.c.member_id == member_id).order_by(t.entry.c.id.desc()).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def pending_adjustments(self, *, limit: int = 100) -> list[dict]:
        with self.engine.connect() as c:
            rows = c.execute(select(t.adjustment).where(t.adjustment.c.status == "pending").order_by(t.adjustment.c.id).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    # -- internals -------------------------------------------------------------------------------------
    def _run(self, conn: Connection | None, key: str, work: Callable[[Connection], Posted]) -> Posted:
        if not key or len(key) > 200:
            raise ValueError("an idempotency key is 1-200 characters")
        if conn is not None:
            return work(conn)
        try:
            with write_transaction(self.engine) as c:
                return work(c)
        except (IntegrityError, KeyAlreadyPosted):
            # Two first postings of one key raced (possible only for different members): the loser reports the winner's entry.
            with self.engine.connect() as c:
                found = self._existing(c, key)
            if found:
                return found
            raise

    def _account(self, c: Connection, kind: str, member_id: int, currency: str) -> int:
        q = select(t.account.c.id).where(t.account.c.kind == kind, t.account.c.member_id == member_id, t.account.c.currency == currency)
        acc = c.execute(q).scalar()
        if acc is None:
            _insert_ignore(c, t.account, {"kind": kind, "member_id": member_id, "currency": currency,
                                          "balance": 0 if kind in t.MEMBER_KINDS else None, "updated_at": self.clock()},
                           ["kind", "member_id", "currency"])
            acc = c.execute(q).scalar_one()
        return acc

    def _lock(self, c: Connection, kind: str, member_id: int, currency: str) -> tuple[int, int]:
        """The member's account, row-locked until the transaction ends (a no-op on SQLite, whose writer holds the database lock)."""
        key = {"kind": kind, "member_id": member_id, "currency": currency}
        row = c.execute(_LOCK_ACCOUNT, key).first()
        if row is None:  # the member's first posting of this kind: create the account, then lock it
            self._account(c, kind, member_id, currency)
            row = c.execute(_LOCK_ACCOUNT, key).one()
        return int(row[0]), int(row[1])

    def _hold(self, c: Connection, kind: str, member_id: int, currency: str, counter: str, key: str) -> _Hold:
        """Lock the member's account for an earn or redeem and learn what the posting needs; raises if the member check refuses.

        On PostgreSQL one statement does it, and an earlier entry under ``key`` is found by the append's ``ON CONFLICT``
        (which also sees one committed while this posting waited for the lock). SQLite, whose writer holds the database
        lock, and a member's first posting look for the key here."""
        params = {"kind": kind, "member_id": member_id, "currency": currency, "counter": counter}
        if c.dialect.name == "postgresql":
            row = c.execute(self._hold_pg, params).first()
            if row is not None and row[2] is not None:
                hold = _Hold(int(row[0]), int(row[1]), int(row[2]), int(row[3]), None)
                return hold if self.member_check is None else self._checked(c, hold, key, row[4])
            acc, bal = self._lock(c, kind, member_id, currency)  # a first posting: open what is missing the slow way
            counter_acc = self._account(c, counter, 0, currency)
        else:
            row = c.execute(_LOCK_ACCOUNT_AND_COUNTER, params).first()
            if row is None or row[2] is None:
                acc, bal = self._lock(c, kind, member_id, currency)
                counter_acc = self._account(c, counter, 0, currency)
            else:
                acc, bal, counter_acc = int(row[0]), int(row[1]), int(row[2])
        return _Hold(acc, bal, counter_acc, None, self._existing_or_refused(c, key, member_id))

    def _checked(self, c: Connection, hold: _Hold, key: str, status) -> _Hold:
        """``hold`` once the member check lets the member post; a replay of an earlier posting is answered whatever the status is now."""
        try:
            self.member_check.refuse(status)  # type: ignore[union-attr]  # called with a member check only
        except LedgerRefused:
            found = self._existing(c, key)
            if found:
                return replace(hold, found=found)
            raise
        return hold

    def _posted(self, c: Connection, key: str) -> Posted:
        """The entry an append found already posted under ``key``."""
        found = self._existing(c, key)
        if found is None:
            raise AssertionError(f"the key {key!r} conflicted but no entry holds it")
        return found

    def _existing_or_refused(self, c: Connection, key: str, member_id: int) -> Posted | None:
        """The entry already posted under ``key``; else None, once the member check let the member post (it raises if not)."""
        if self._find_key_and_status is None or self.member_check is None:
            return self._existing(c, key)
        found_id, found_amount, status = c.execute(self._find_key_and_status, {"key": key, "member_id": member_id}).one()
        if found_id is not None:
            return Posted(found_id, found_amount, False)
        self.member_check.refuse(status)
        return None

    def _existing(self, c: Connection, key: str) -> Posted | None:
        row = c.execute(_FIND_KEY, {"key": key}).first()
        return Posted(row.id, row.amount, False) if row else None

    def _entry(self, c: Connection, entry_id: int) -> dict:
        row = c.execute(select(t.entry).where(t.entry.c.id == entry_id)).mappings().first()
        if row is None:
            raise LedgerRefused(text("Points entry #{id} does not exist.", "积分分录 #{id} 不存在。", id=entry_id))
        return dict(row)

    def reversed_points(self, c: Connection, entry_id: int) -> int:
        """Points of ``entry_id`` already reversed (including shortfalls that could not be taken back)."""
        total = 0
        for r in c.execute(select(t.entry.c.details).where(t.entry.c.reversal_of == entry_id)):
            total += int((r.details or {}).get("points", 0))
        return total

    def _append(self, c: Connection, *, key, kind, currency, member_id, amount, lines, source_type, source_id, memo, details, actor,
                reversal_of=None, lot: tuple[int, int, dt.datetime | None] | None = None, taken: list[list[int]] | None = None,
                fifo: tuple[int, int] | None = None, entry_id: int | None = None) -> int:
        """Write an entry, its lines (summing to zero), the balance moves, what it ``taken`` from lots ([lot id, points],
        from ``_consume``) or, with ``fifo`` (account, points), what it takes from the account's oldest lots (recorded in
        ``details["lots"]``), the new ``lot`` (account, points, expiry) if any, the outbox event and the audit entry; returns
        the entry id. ``entry_id``: the id already drawn from the entries' sequence (PostgreSQL). Raises ``KeyAlreadyPosted``
        (PostgreSQL) when ``key`` turns out to be taken, having written nothing."""
        if sum(a for _, a in lines) != 0:
            raise AssertionError("an entry's lines must sum to zero")
        now = self.clock()
        lines = [(acc, a) for acc, a in lines if a]  # a reversal that found nothing left to take back records its shortfall with no lines
        change = {"kind": kind, "points": amount, "currency": currency, "key": key, "source": f"{source_type}:{source_id}"}
        entry = {"kind": kind, "currency": currency, "member_id": member_id, "amount": amount, "source_type": source_type,
                 "source_id": None if source_id is None else str(source_id), "reversal_of": reversal_of, "memo": (memo or None) and memo[:500],
                 "details": details}
        outbox = {"topic": f"points.{kind}", "entity": MEMBER_ENTITY, "payload": {**change, "member_id": member_id, "actor_id": actor.id}}
        if c.dialect.name == "postgresql":  # one statement (append_pg.py)
            if entry_id is None:
                entry_id = c.execute(_NEXT_ENTRY_ID).scalar_one()
            audit = pending_entry(c, category="record", action=f"points.{kind}", actor_id=actor.id, entity=MEMBER_ENTITY, record_id=member_id,
                                  changes={"entry": entry_id, **change})
            params = {**entry, **outbox, "payload": {**outbox["payload"], "entry": entry_id}, "entry_id": entry_id, "key": key, "now": now,
                      "actor": actor.id, **{f"a_{col}": audit[col] for col in AUDIT_COLUMNS}}
            for i, (acc, a) in enumerate(lines):
                params[f"acc_{i}"], params[f"amt_{i}"] = acc, a
            if lot is not None:
                params["lot_acc"], params["lot_amount"], params["lot_expires"] = lot
            if fifo is not None:
                params["fifo_acc"], params["fifo_points"] = fifo
                new_id, got = c.execute(append_statement(len(lines), lot is not None, False, True), params).one()
                if got == fifo[1]:  # else the key was free but the lots short: nothing was written
                    return self._appended(new_id, key)
                # the oldest lots the statement looks at hold too little: take them the long way
                taken = self._consume(c, fifo[0], fifo[1])
                params["details"] = details = {**details, "lots": taken}
            if taken:
                params["take_ids"], params["take_points"] = [lot_id for lot_id, _ in taken], [n for _, n in taken]
            return self._appended(c.execute(append_statement(len(lines), lot is not None, bool(taken)), params).one()[0], key)
        if fifo is not None:
            taken = self._consume(c, fifo[0], fifo[1])
            entry["details"] = {**details, "lots": taken}
        entry_id = c.execute(_INSERT_ENTRY, {**entry, "idempotency_key": key, "created_at": now, "created_by": actor.id}).inserted_primary_key[0]
        if lines:
            c.execute(_INSERT_LINES, [{"entry_id": entry_id, "account_id": acc, "currency": currency, "amount": a} for acc, a in lines])
            # counter accounts (balance NULL) match nothing, so their shared rows are never locked
            c.execute(_MOVE_BALANCE, [{"b_acc": acc, "b_points": a, "b_now": now} for acc, a in lines])
        c.execute(_INSERT_OUTBOX, {**outbox, "created_at": now, "record_id": member_id, "payload": {**outbox["payload"], "entry": entry_id}})
        if taken:
            c.execute(_TAKE_FROM_LOT, [{"b_lot": lot_id, "b_n": n} for lot_id, n in taken])
        if lot is not None:
            self._add_lot(c, lot[0], entry_id, lot[1], lot[2])
        # SQLite seals the entry at once, under the write lock the transaction holds anyway.
        record_event(c, category="record", action=f"points.{kind}", actor_id=actor.id, entity=MEMBER_ENTITY, record_id=member_id,
                     changes={"entry": entry_id, **change})
        return entry_id

    @staticmethod
    def _appended(entry_id: int | None, key: str) -> int:
        if entry_id is None:
            raise KeyAlreadyPosted(key)  # nothing was written
        return entry_id

    def _add_lot(self, c: Connection, acc: int, entry_id: int, amount: int, expires_at: dt.datetime | None) -> None:
        c.execute(_INSERT_LOT, {"account_id": acc, "entry_id": entry_id, "amount": amount, "remaining": amount, "expires_at": expires_at,
                                "created_at": self.clock()})

    def _consume(self, c: Connection, acc: int, points: int, *, first_entry: int | None = None) -> list[list[int]]:
        """What to take for ``points`` from the wallet's open lots, oldest first (``first_entry``'s own lot before the rest),
        as [lot id, points]; ``_append`` writes it with the entry.

        Lots are read 64 at a time through the partial index of open lots, so a wallet with many spent lots costs nothing extra."""
        used: list[list[int]] = []
        left = points
        if first_entry is not None:
            for lot in c.execute(_OPEN_LOTS_OF_ENTRY, {"acc": acc, "entry": first_entry}).all():
                left = _take(lot, left, used)
        emptied = {lot_id for lot_id, _ in used}  # taken whole if anything is left to take (written back at the end)
        after = 0
        while left:
            lots = c.execute(_OPEN_LOTS_AFTER, {"acc": acc, "after": after}).all()
            if not lots:
                raise AssertionError(f"lots of account {acc} hold less than its balance")
            for lot in lots:
                after = lot.id
                if lot.id not in emptied:
                    left = _take(lot, left, used)
                if not left:
                    break
        return used

    def _earliest_expiry(self, c: Connection, used: list) -> dt.datetime | None:
        ids = [int(u[0]) for u in used]
        if not ids:
            return None
        exp = [r.expires_at for r in c.execute(select(t.lot.c.expires_at).where(t.lot.c.id.in_(ids)))]
        return None if any(e is None for e in exp) else min(exp)

    def _expire_account(self, account_id: int, now: dt.datetime, actor: Actor) -> int:
        posted = 0
        with write_transaction(self.engine) as c:
            acc = c.execute(select(t.account).where(t.account.c.id == account_id)).mappings().one()
            self._lock(c, "wallet", acc["member_id"], acc["currency"])
            counter = self._account(c, "expired", 0, acc["currency"])
            lots = c.execute(select(t.lot.c.id, t.lot.c.remaining).where(t.lot.c.account_id == account_id, t.lot.c.expires_at <= now,
                                                                          t.lot.c.remaining > 0).order_by(t.lot.c.id)).all()
            for lot in lots:
                n = int(lot.remaining)
                c.execute(t.lot.update().where(t.lot.c.id == lot.id).values(remaining=0))
                self._append(c, key=f"expire:lot:{lot.id}", kind="expire", currency=acc["currency"], member_id=acc["member_id"], amount=-n,
                             lines=[(account_id, -n), (counter, n)], source_type="expiry", source_id=lot.id, memo=None,
                             details={"lots": [[lot.id, n]], "points": n}, actor=actor)
                posted += 1
        return posted

    def _pending_adjustment(self, c: Connection, adjustment_id: int) -> dict:
        row = c.execute(select(t.adjustment).where(t.adjustment.c.id == adjustment_id).with_for_update()).mappings().first()
        if row is None or row["status"] != "pending":
            raise LedgerRefused(text("Adjustment #{id} is not waiting for approval.", "调整 #{id} 不在待审批状态。", id=adjustment_id))
        return dict(row)

    def _apply_adjustment(self, c: Connection, adjustment_id: int, actor: Actor) -> Posted:
        row = c.execute(select(t.adjustment).where(t.adjustment.c.id == adjustment_id)).mappings().one()
        member, cur, points = row["member_id"], row["currency"], row["amount"]
        key = f"adjust:{adjustment_id}"
        wallet, bal = self._lock(c, "wallet", member, cur)
        counter = self._account(c, "liability", 0, cur)
        if points < 0 and bal < -points:
            raise InsufficientPoints(text("Not enough points: the balance is {balance}, {points} are needed.", "积分不足：余额 {balance}，需要 {points}。",
                                          balance=bal, points=-points), details={"balance": bal, "needed": -points})
        details = {"adjustment": adjustment_id, "reason": row["reason"]}
        used: list[list[int]] = []
        if points < 0:
            details["lots"] = used = self._consume(c, wallet, -points)
        entry_id = self._append(c, key=key, kind="adjust", currency=cur, member_id=member, amount=points, lines=[(wallet, points), (counter, -points)],
                                source_type="adjustment", source_id=adjustment_id, memo=row["reason"], details=details, actor=actor,
                                lot=(wallet, points, None) if points > 0 else None, taken=used)
        c.execute(t.adjustment.update().where(t.adjustment.c.id == adjustment_id)
                  .values(status="approved", decided_by=actor.id, decided_at=self.clock(), entry_id=entry_id))
        return Posted(entry_id, points, True)


def check_invariants(conn: Connection) -> list[str]:
    """What is wrong with the ledger (empty when sound): every entry sums to zero, every materialised balance equals
    Σ its lines and is not negative, and every wallet's open lots add up to its balance."""
    problems = []
    for r in conn.execute(select(t.line.c.entry_id, t.line.c.currency, func.sum(t.line.c.amount)).group_by(t.line.c.entry_id, t.line.c.currency)
                          .having(func.sum(t.line.c.amount) != 0)):
        problems.append(f"entry {r[0]} does not balance in {r[1]}: {r[2]}")
    sums = select(t.line.c.account_id, func.sum(t.line.c.amount).label("s")).group_by(t.line.c.account_id).subquery()
    lots = select(t.lot.c.account_id, func.sum(t.lot.c.remaining).label("r")).group_by(t.lot.c.account_id).subquery()
    q = (select(t.account.c.id, t.account.c.kind, t.account.c.balance, func.coalesce(sums.c.s, 0), func.coalesce(lots.c.r, 0))
         .select_from(t.account.outerjoin(sums, sums.c.account_id == t.account.c.id).outerjoin(lots, lots.c.account_id == t.account.c.id))
         .where(t.account.c.balance.is_not(None)))
    for acc, kind, bal, total, remaining in conn.execute(q):
        if bal != total:
            problems.append(f"account {acc}: balance {bal} but its lines sum to {total}")
        if bal < 0:
            problems.append(f"account {acc}: negative balance {bal}")
        if kind == "wallet" and remaining != bal:
            problems.append(f"account {acc}: lots hold {remaining} but the balance is {bal}")
    bad_lots = conn.execute(select(func.count()).select_from(t.lot).where(and_(t.lot.c.remaining < 0) | (t.lot.c.remaining > t.lot.c.amount))).scalar()
    if bad_lots:
        problems.append(f"{bad_lots} lots hold a remaining amount outside 0..amount")
    return problems


@contextmanager
def _maybe(engine: Engine, conn: Connection | None) -> Iterator[Connection]:
    if conn is not None:
        yield conn
    else:
        with engine.connect() as c:
            yield c


def _take(lot, left: int, used: list[list[int]]) -> int:
    """Note what ``_consume`` takes from ``lot`` (``_append`` writes it back)."""
    n = min(left, int(lot.remaining))
    if n:
        used.append([lot.id, n])
    return left - n


def _positive(points) -> None:
    if not isinstance(points, int) or isinstance(points, bool) or points <= 0:
        raise ValidationFailed({"points": [text("Enter a whole number of points greater than 0.", "请输入大于 0 的整数积分。")]})


def _counter(kind: str, allowed: tuple[str, ...]) -> None:
    if kind not in allowed:
        raise ValueError(f"counter account must be one of {', '.join(allowed)}, not {kind!r}")


def _currency(currency: str) -> None:
    if currency not in t.CURRENCIES:
        raise ValidationFailed({"currency": [text("Points are reward or upgrade points.", "积分类型只能是奖励积分或升级积分。")]})


def _parse(value) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None
