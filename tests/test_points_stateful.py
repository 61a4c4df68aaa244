"""Random sequences of earn / confirm / redeem / expire / reverse / refund / repeated keys (Hypothesis stateful),
checking after every step: each balance equals Σ its postings and is never negative, every entry sums to zero,
wallet lots add up to the balance, and no posting already written has changed."""
from __future__ import annotations

import datetime as dt
import itertools

from hypothesis import HealthCheck, settings, strategies as st
from sqlalchemy import select
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule, run_state_machine_as_test

from crmkit.apps.membership.ledger import InsufficientPoints, LedgerRefused, LedgerService, check_invariants
from crmkit.apps.membership.ledger import tables as lt
from crmkit.runtime.actor import SYSTEM

from ledger_support import postings_snapshot

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
RUNS = itertools.count()


def make_machine(services):
    class LedgerMachine(RuleBasedStateMachine):
        earned = Bundle("earned")
        pending = Bundle("pending")
        spent = Bundle("spent")
        carried = Bundle("carried")

        def __init__(self):
            super().__init__()
            self.run = next(RUNS)
            self.members = [self.run * 10 + i + 1 for i in range(3)]
            self.now = BASE
            self.ledger = LedgerService(services.engine, clock=lambda: self.now)
            self.keys = itertools.count()
            self.last_earn: tuple | None = None
            self.snapshot = postings_snapshot(services)

        def key(self, what: str) -> str:
            return f"sm{self.run}:{what}:{next(self.keys)}"

        def wallet(self, m: int) -> int:
            return self.ledger.balances(m)["reward"]["wallet"]

        @rule(target=earned, m=st.integers(0, 2), points=st.integers(1, 500), days=st.one_of(st.none(), st.integers(-3, 60)))
        def earn(self, m, points, days):
            member = self.members[m]
            before = self.wallet(member)
            expires = None if days is None else self.now + dt.timedelta(days=days)
            key = self.key("earn")
            p = self.ledger.earn(member, points, key=key, actor=SYSTEM, expires_at=expires)
            self.last_earn = (member, points, key, expires, p.entry_id)
            assert self.wallet(member) == before + points
            return p.entry_id

        @rule(target=pending, m=st.integers(0, 2), points=st.integers(1, 300))
        def earn_pending(self, m, points):
            member = self.members[m]
            before = self.wallet(member)
            p = self.ledger.earn(member, points, key=self.key("pend"), actor=SYSTEM, pending=True)
            assert self.wallet(member) == before
            return p.entry_id

        @rule(entry=consumes(pending))
        def confirm(self, entry):
            try:
                self.ledger.confirm(entry, actor=SYSTEM)
            except LedgerRefused:
                pass  # fully reversed before confirmation

        @rule()
        def repeat_last_key(self):
            if self.last_earn is None:
                return
            member, points, key, expires, entry_id = self.last_earn
            before = self.wallet(member)
            p = self.ledger.earn(member, points, key=key, actor=SYSTEM, expires_at=expires)
            assert (p.entry_id, p.created) == (entry_id, False)
            assert self.wallet(member) == before

        @rule(target=spent, m=st.integers(0, 2), points=st.integers(1, 600))
        def redeem(self, m, points):
            member = self.members[m]
            before = self.wallet(member)
            try:
                p = self.ledger.redeem(member, points, key=self.key("red"), actor=SYSTEM)
            except InsufficientPoints:
                assert before < points
                assert self.wallet(member) == before
                return -1
            assert before >= points and self.wallet(member) == before - points
            return p.entry_id

        @rule(days=st.integers(0, 40))
        def expire(self, days):
            self.now = self.now + dt.timedelta(days=days)
            self.ledger.expire_due(self.now)
            assert self.ledger.expire_due(self.now) == 0

        @rule(entry=st.one_of(earned, pending, spent), part=st.one_of(st.none(), st.integers(1, 200)))
        def reverse(self, entry, part):
            if entry < 0:
                return
            try:
                self.ledger.reverse(entry, key=self.key("rev"), actor=SYSTEM, points=part)
            except LedgerRefused:
                pass  # nothing (or less than asked) left to reverse, or already confirmed into the wallet

        @rule(entry=earned, pct=st.integers(1, 100))
        def refund(self, entry, pct):
            """A partial refund reverses the matching share of what the order earned (key derived from the refund total)."""
            e = next(h for m in self.members for h in self.ledger.history(m, limit=1000) if h["id"] == entry)
            target = e["amount"] * pct // 100
            try:
                self.ledger.reverse(entry, key=f"sm{self.run}:refund:{entry}:{pct}", actor=SYSTEM, points=target) if target else None
            except LedgerRefused:
                pass

        @rule(target=carried, m=st.integers(0, 2), days=st.integers(1, 90))
        def carry(self, m, days):
            """结转: re-date a member's expiring lots; the balance does not change."""
            member = self.members[m]
            before = self.wallet(member)
            with services.engine.connect() as c:
                lots = c.execute(select(lt.lot.c.id).select_from(lt.lot.join(lt.account, lt.account.c.id == lt.lot.c.account_id))
                                 .where(lt.account.c.member_id == member, lt.account.c.kind == "wallet", lt.account.c.currency == "reward",
                                        lt.lot.c.remaining > 0, lt.lot.c.expires_at.is_not(None))).scalars().all()
            if not lots:
                return -1
            p = self.ledger.carry(member, lots, self.now + dt.timedelta(days=days), key=self.key("carry"), actor=SYSTEM)
            assert self.wallet(member) == before
            return p.entry_id

        @rule(entry=consumes(carried))
        def uncarry(self, entry):
            if entry < 0:
                return
            member = next(m for m in self.members if any(h["id"] == entry for h in self.ledger.history(m, limit=1000)))
            before = self.wallet(member)
            self.ledger.uncarry(entry, key=self.key("uncarry"), actor=SYSTEM)
            assert self.wallet(member) == before

        @invariant()
        def ledger_is_sound(self):
            with services.engine.connect() as c:
                assert check_invariants(c) == []
            for m in self.members:
                b = self.ledger.balances(m)["reward"]
                assert b["wallet"] >= 0 and b["pending"] >= 0

        @invariant()
        def postings_are_never_edited(self):
            entries, lines = postings_snapshot(services)
            old_entries, old_lines = self.snapshot
            assert entries[:len(old_entries)] == old_entries
            assert lines[:len(old_lines)] == old_lines
            self.snapshot = (entries, lines)

    return LedgerMachine


def test_random_ledger_sequences_keep_every_invariant(services):
    run_state_machine_as_test(make_machine(services), settings=settings(
        max_examples=40, stateful_step_count=30, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture]))
