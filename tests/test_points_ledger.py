"""The points ledger: every flow on a real database (SQLite and PostgreSQL), checked against its invariants."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import inspect, select, text as sql
from sqlalchemy.exc import DBAPIError

from crmkit.apps.membership.ledger import InsufficientPoints, LedgerRefused
from crmkit.apps.membership.ledger import tables as lt
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.audit import flush_sealer
from crmkit.runtime.audit.verify import verify_chain
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.storage import platform_tables as pt

from ledger_support import assert_sound, entry_count, ledger, postings_snapshot, staff

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)


def test_installer_creates_the_app_tables_with_append_only_triggers(services):
    names = set(inspect(services.engine).get_table_names())
    assert {t.name for t in lt.metadata.sorted_tables} <= names


def test_earn_credits_the_wallet_and_balances_to_zero(services):
    lg = ledger(services)
    p = lg.earn(7, 120, key="t:earn:1", actor=SYSTEM, source_type="order", source_id=1)
    assert p.created and p.amount == 120
    assert lg.balances(7)["reward"] == {"wallet": 120, "pending": 0}
    hist = lg.history(7)
    assert [(h["kind"], h["amount"], h["source_id"]) for h in hist] == [("earn", 120, "1")]
    assert_sound(services)


def test_same_idempotency_key_posts_once(services):
    lg = ledger(services)
    a = lg.earn(7, 50, key="t:once", actor=SYSTEM)
    b = lg.earn(7, 50, key="t:once", actor=SYSTEM)
    assert (b.entry_id, b.created) == (a.entry_id, False)
    assert lg.balances(7)["reward"]["wallet"] == 50
    assert entry_count(services, idempotency_key="t:once") == 1


def test_a_replayed_redeem_gets_its_first_entry_even_when_the_balance_is_gone_and_writes_nothing(services):
    lg = ledger(services)
    lg.earn(7, 100, key="t:seed", actor=SYSTEM)
    first = lg.redeem(7, 80, key="t:gift", actor=SYSTEM)
    lg.redeem(7, 20, key="t:rest", actor=SYSTEM)
    before = postings_snapshot(services), audit_and_outbox(services)
    again = lg.redeem(7, 80, key="t:gift", actor=SYSTEM)  # the balance is 0 now: a new redeem would be refused
    assert (again.entry_id, again.amount, again.created) == (first.entry_id, -80, False)
    assert (postings_snapshot(services), audit_and_outbox(services)) == before
    with pytest.raises(InsufficientPoints):
        lg.redeem(7, 80, key="t:gift:2", actor=SYSTEM)
    assert lg.balances(7)["reward"]["wallet"] == 0 and entry_count(services, idempotency_key="t:gift") == 1
    assert_sound(services)


def audit_and_outbox(services) -> tuple[int, int]:
    with services.engine.connect() as c:
        return tuple(c.execute(select(sql("count(*)")).select_from(t)).scalar_one() for t in (pt.audit, pt.outbox))


def test_every_posting_writes_an_audit_entry_and_an_outbox_event(services):
    """PostgreSQL writes a posting in one statement, SQLite statement by statement (append_pg.py): both write the same rows."""
    lg = ledger(services)
    expiry = dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)
    p = lg.earn(9, 30, key="t:audit", actor=staff(5), source_type="order", source_id=77, expires_at=expiry, memo="m" * 600)
    with services.engine.connect() as c:
        audit = c.execute(select(pt.audit.c.action, pt.audit.c.actor_id, pt.audit.c.changes).where(pt.audit.c.entity == "membership.member",
                                                                                                    pt.audit.c.record_id == 9)).all()
        events = c.execute(select(pt.outbox.c.topic, pt.outbox.c.entity, pt.outbox.c.payload).where(pt.outbox.c.record_id == 9)).all()
        entry = c.execute(select(lt.entry).where(lt.entry.c.id == p.entry_id)).mappings().one()
        lines = c.execute(select(lt.line.c.account_id, lt.line.c.currency, lt.line.c.amount).where(lt.line.c.entry_id == p.entry_id)
                          .order_by(lt.line.c.amount)).all()
        lots = c.execute(select(lt.lot.c.account_id, lt.lot.c.amount, lt.lot.c.remaining, lt.lot.c.expires_at).where(lt.lot.c.entry_id == p.entry_id)).all()
        wallet = c.execute(select(lt.account.c.id).where(lt.account.c.kind == "wallet", lt.account.c.member_id == 9)).scalar_one()
        liability = c.execute(select(lt.account.c.id).where(lt.account.c.kind == "liability", lt.account.c.member_id == 0)).scalar_one()
    change = {"entry": p.entry_id, "kind": "earn", "points": 30, "currency": "reward", "key": "t:audit", "source": "order:77"}
    assert [(a.action, a.actor_id, a.changes) for a in audit] == [("points.earn", 5, change)]
    assert [(e.topic, e.entity, e.payload) for e in events] == [("points.earn", "membership.member", {**change, "member_id": 9, "actor_id": 5})]
    assert (entry["kind"], entry["amount"], entry["source_id"], entry["memo"], entry["created_by"]) == ("earn", 30, "77", "m" * 500, 5)
    assert entry["details"] == {"expires_at": expiry.isoformat()}
    assert [tuple(r) for r in lines] == [(liability, "reward", -30), (wallet, "reward", 30)]
    assert [tuple(r) for r in lots] == [(wallet, 30, 30, expiry)]
    # a redeem: the lots it takes are picked in the same statement on PostgreSQL, by _consume on SQLite
    r = lg.redeem(9, 12, key="t:audit:spend", actor=staff(5), source_type="reward", source_id=3)
    with services.engine.connect() as c:
        spent = c.execute(select(lt.entry).where(lt.entry.c.id == r.entry_id)).mappings().one()
        remaining = c.execute(select(lt.lot.c.remaining).where(lt.lot.c.entry_id == p.entry_id)).scalar_one()
        lot_id = c.execute(select(lt.lot.c.id).where(lt.lot.c.entry_id == p.entry_id)).scalar_one()
        audit = c.execute(select(pt.audit.c.changes).where(pt.audit.c.action == "points.redeem")).scalars().all()
    assert (spent["kind"], spent["amount"], spent["details"], remaining) == ("redeem", -12, {"lots": [[lot_id, 12]]}, 18)
    assert audit == [{"entry": r.entry_id, "kind": "redeem", "points": -12, "currency": "reward", "key": "t:audit:spend", "source": "reward:3"}]
    flush_sealer(services.engine)
    with services.engine.connect() as c:
        report = verify_chain(c)
    assert report.ok and report.pending == 0, [str(x) for x in report.problems]  # the hashes of entries written inside the append verify
    assert_sound(services)


def test_a_redeem_across_more_lots_than_one_statement_reads_takes_them_oldest_first(services):
    """More than FIFO_LOTS lots: PostgreSQL's append finds too few points in the lots it reads and takes the long way."""
    lg = ledger(services)
    for i in range(70):
        lg.earn(4, 1 + i % 3, key=f"t:small:{i}", actor=SYSTEM)
    total = sum(1 + i % 3 for i in range(70))
    with services.engine.connect() as c:
        lot_ids = c.execute(select(lt.lot.c.id).where(lt.lot.c.remaining > 0).order_by(lt.lot.c.id)).scalars().all()
    r = lg.redeem(4, total - 1, key="t:small:spend", actor=SYSTEM)
    with services.engine.connect() as c:
        details = c.execute(select(lt.entry.c.details).where(lt.entry.c.id == r.entry_id)).scalar_one()
        left = c.execute(select(lt.lot.c.id, lt.lot.c.remaining).where(lt.lot.c.remaining > 0)).all()
    assert [lot for lot, _ in details["lots"]] == lot_ids[:-1] and sum(n for _, n in details["lots"]) == total - 1
    assert [tuple(x) for x in left] == [(lot_ids[-1], 1)]  # the newest lot (1 point) is untouched
    assert lg.balances(4)["reward"]["wallet"] == 1
    assert_sound(services)


def test_pending_earn_is_not_spendable_until_confirmed(services):
    lg = ledger(services)
    p = lg.earn(3, 200, key="t:pend", actor=SYSTEM, pending=True, source_type="order", source_id=11)
    assert lg.balances(3)["reward"] == {"wallet": 0, "pending": 200}
    with pytest.raises(InsufficientPoints):
        lg.redeem(3, 10, key="t:r0", actor=SYSTEM)
    c1 = lg.confirm(p.entry_id, actor=SYSTEM)
    c2 = lg.confirm(p.entry_id, actor=SYSTEM)
    assert c1.created and not c2.created and c1.entry_id == c2.entry_id
    assert lg.balances(3)["reward"] == {"wallet": 200, "pending": 0}
    assert_sound(services)


def test_reversal_of_pending_before_confirmation_then_confirm_is_refused(services):
    lg = ledger(services)
    p = lg.earn(3, 80, key="t:pend2", actor=SYSTEM, pending=True)
    lg.reverse(p.entry_id, key="t:pend2:rev", actor=SYSTEM)
    assert lg.balances(3)["reward"] == {"wallet": 0, "pending": 0}
    with pytest.raises(LedgerRefused):
        lg.confirm(p.entry_id, actor=SYSTEM)
    assert_sound(services)


def test_reversal_after_confirmation_takes_points_from_the_wallet(services):
    lg = ledger(services)
    p = lg.earn(3, 80, key="t:pend3", actor=SYSTEM, pending=True)
    lg.confirm(p.entry_id, actor=SYSTEM)
    r = lg.reverse(p.entry_id, key="t:pend3:rev", actor=SYSTEM, points=30)
    assert r.amount == -30
    assert lg.balances(3)["reward"] == {"wallet": 50, "pending": 0}
    assert_sound(services)


def test_redeem_consumes_lots_fifo_and_checks_the_balance(services):
    lg = ledger(services)
    lg.earn(4, 100, key="t:l1", actor=SYSTEM, expires_at=NOW + dt.timedelta(days=10))
    lg.earn(4, 100, key="t:l2", actor=SYSTEM, expires_at=NOW + dt.timedelta(days=20))
    lg.redeem(4, 150, key="t:red", actor=SYSTEM)
    with services.engine.connect() as c:
        lots = [tuple(r) for r in c.execute(select(lt.lot.c.amount, lt.lot.c.remaining).order_by(lt.lot.c.id))]
    assert lots == [(100, 0), (100, 50)]
    with pytest.raises(InsufficientPoints) as exc:
        lg.redeem(4, 51, key="t:red2", actor=SYSTEM)
    assert "50" in str(exc.value) and "积分不足" in exc.value.message.zh
    assert lg.balances(4)["reward"]["wallet"] == 50
    assert entry_count(services, idempotency_key="t:red2") == 0
    assert_sound(services)


def test_expire_due_expires_only_what_is_left_of_due_lots(services):
    lg = ledger(services)
    lg.earn(5, 100, key="t:e1", actor=SYSTEM, expires_at=NOW - dt.timedelta(days=1))
    lg.earn(5, 100, key="t:e2", actor=SYSTEM, expires_at=NOW + dt.timedelta(days=30))
    lg.earn(5, 40, key="t:e3", actor=SYSTEM)  # never expires
    lg.redeem(5, 70, key="t:spend", actor=SYSTEM)  # takes 70 of the oldest lot
    assert lg.expire_due(NOW) == 1
    assert lg.balances(5)["reward"]["wallet"] == 140
    assert lg.expire_due(NOW) == 0  # nothing left due: a second run posts nothing
    assert lg.expire_due(NOW + dt.timedelta(days=31)) == 1
    assert lg.balances(5)["reward"]["wallet"] == 40
    kinds = [(h["kind"], h["amount"]) for h in lg.history(5)]
    assert kinds[:2] == [("expire", -100), ("expire", -30)]
    assert_sound(services)


def test_reverse_redeem_gives_points_back_and_partial_reversals_add_up(services):
    lg = ledger(services)
    lg.earn(6, 300, key="t:r-earn", actor=SYSTEM)
    red = lg.redeem(6, 200, key="t:r-red", actor=SYSTEM)
    lg.reverse(red.entry_id, key="t:r-red:rev1", actor=SYSTEM, points=50)
    lg.reverse(red.entry_id, key="t:r-red:rev2", actor=SYSTEM)  # the remaining 150
    assert lg.balances(6)["reward"]["wallet"] == 300
    with pytest.raises(LedgerRefused):
        lg.reverse(red.entry_id, key="t:r-red:rev3", actor=SYSTEM, points=1)
    assert_sound(services)


def test_reversing_spent_points_never_goes_negative(services):
    lg = ledger(services)
    e = lg.earn(8, 100, key="t:s-earn", actor=SYSTEM)
    lg.redeem(8, 90, key="t:s-red", actor=SYSTEM)
    r = lg.reverse(e.entry_id, key="t:s-rev", actor=SYSTEM)
    assert r.amount == -10
    assert lg.balances(8)["reward"]["wallet"] == 0
    [row] = [h for h in lg.history(8) if h["kind"] == "reverse"]
    assert row["details"]["shortfall"] == 90 and row["reversal_of"] == e.entry_id
    with pytest.raises(LedgerRefused):  # the shortfall counts as reversed
        lg.reverse(e.entry_id, key="t:s-rev2", actor=SYSTEM)
    assert_sound(services)


def test_a_reversal_cannot_be_reversed(services):
    lg = ledger(services)
    e = lg.earn(8, 10, key="t:rr", actor=SYSTEM)
    r = lg.reverse(e.entry_id, key="t:rr:rev", actor=SYSTEM)
    with pytest.raises(LedgerRefused):
        lg.reverse(r.entry_id, key="t:rr:rev:rev", actor=SYSTEM)


def test_small_adjustment_applies_at_once(services):
    lg = ledger(services, approval_threshold=500)
    res = lg.request_adjustment(12, 300, "补录门店活动积分", actor=staff(2))
    assert res.status == "applied" and res.posted.amount == 300
    assert lg.balances(12)["reward"]["wallet"] == 300
    assert [h["memo"] for h in lg.history(12)] == ["补录门店活动积分"]


def test_large_adjustment_waits_for_another_user(services):
    lg = ledger(services, approval_threshold=500)
    res = lg.request_adjustment(12, 800, "goodwill", actor=staff(2))
    assert res.status == "pending" and res.posted is None
    assert lg.balances(12)["reward"]["wallet"] == 0
    with pytest.raises(LedgerRefused):
        lg.approve_adjustment(res.adjustment_id, actor=staff(2))  # the requester cannot approve it
    posted = lg.approve_adjustment(res.adjustment_id, actor=staff(3))
    assert posted.amount == 800 and lg.balances(12)["reward"]["wallet"] == 800
    with pytest.raises(LedgerRefused):
        lg.approve_adjustment(res.adjustment_id, actor=staff(4))  # already decided
    rej = lg.request_adjustment(12, -600, "wrong entry", actor=staff(2))
    lg.reject_adjustment(rej.adjustment_id, actor=staff(3))
    assert lg.balances(12)["reward"]["wallet"] == 800
    assert lg.pending_adjustments() == []
    assert_sound(services)


def test_negative_adjustment_cannot_overdraw(services):
    lg = ledger(services)
    lg.earn(13, 20, key="t:adj-earn", actor=SYSTEM)
    with pytest.raises(InsufficientPoints):
        lg.request_adjustment(13, -30, "fix", actor=staff(2))
    assert lg.balances(13)["reward"]["wallet"] == 20
    assert entry_count(services, kind="adjust") == 0


@pytest.mark.parametrize("points,reason", [(0, "x"), (10, "  "), ("10", "x")])
def test_bad_adjustment_input_is_refused_and_nothing_stored(services, points, reason):
    lg = ledger(services)
    with pytest.raises(ValidationFailed):
        lg.request_adjustment(14, points, reason, actor=staff(2))
    with services.engine.connect() as c:
        assert c.execute(select(lt.adjustment)).first() is None


@pytest.mark.parametrize("points", [0, -5, 1.5, True])
def test_bad_earn_amounts_are_refused(services, points):
    with pytest.raises(ValidationFailed):
        ledger(services).earn(1, points, key="t:bad", actor=SYSTEM)
    assert entry_count(services) == 0


def test_upgrade_points_are_kept_apart_and_not_redeemable(services):
    lg = ledger(services)
    lg.earn(15, 500, key="t:up", actor=SYSTEM, currency="upgrade")
    assert lg.balances(15)["upgrade"]["wallet"] == 500 and lg.balances(15)["reward"]["wallet"] == 0
    with pytest.raises(InsufficientPoints):
        lg.redeem(15, 1, key="t:up-red", actor=SYSTEM)


@pytest.mark.parametrize("statement", [
    "UPDATE membership_pts_entry SET amount = amount + 1",
    "DELETE FROM membership_pts_entry",
    "UPDATE membership_pts_line SET amount = 0",
    "DELETE FROM membership_pts_line",
])
def test_postings_cannot_be_updated_or_deleted(services, statement):
    lg = ledger(services)
    lg.earn(16, 10, key="t:frozen", actor=SYSTEM)
    before = postings_snapshot(services)
    with pytest.raises(DBAPIError) as exc:
        with services.engine.begin() as c:
            c.execute(sql(statement))
    assert "append-only" in str(exc.value)
    assert postings_snapshot(services) == before


def test_ledger_tables_are_not_entities(services):
    """Postings are not reachable through the record service or the API: no entity maps to them."""
    tables = {e.table_name for e in services.store.catalog().entities.values()}
    assert not tables & {t.name for t in lt.metadata.sorted_tables}


def test_carry_over_redates_lots_and_reversal_restores_them(services):
    from crmkit.apps.membership.carryover import carry_over, plan_end_instant
    from crmkit.runtime.packages import run_action

    from ledger_support import make_plan

    plan = make_plan(services, expiry_rule="plan_end", carry_over_rule="min_balance", carry_over_min=100)
    services.records.create("membership.points_plan", {"name": "2027", "code": "P2027", "starts_on": "2027-01-01", "ends_on": "2027-12-31"}, SYSTEM)
    end = plan_end_instant(dt.date(2026, 12, 31))
    lg = ledger(services)
    lg.earn(21, 150, key="co:a", actor=SYSTEM, expires_at=end)
    lg.earn(22, 60, key="co:b", actor=SYSTEM, expires_at=end)  # under the minimum: not carried
    lg.earn(21, 30, key="co:c", actor=SYSTEM)  # never expires: nothing to carry
    out = carry_over(services, plan, actor=SYSTEM)
    assert out == {"members": 1, "points": 150}
    assert carry_over(services, plan, actor=SYSTEM) == {"members": 0, "points": 0}  # a re-run carries nothing twice
    assert lg.expire_due(end + dt.timedelta(seconds=1)) == 1  # only member 22's lot expires at the plan's end
    assert lg.balances(21)["reward"]["wallet"] == 180 and lg.balances(22)["reward"]["wallet"] == 0
    assert lg.expire_due(plan_end_instant(dt.date(2027, 12, 31))) == 1  # the carried lot expires with the next plan
    assert lg.balances(21)["reward"]["wallet"] == 30
    assert_sound(services)

    lg.earn(23, 500, key="co:d", actor=SYSTEM, expires_at=end)
    run_action(services, "membership", "points.carry_over", SYSTEM, {"plan": plan})
    assert run_action(services, "membership", "points.reverse_carry_over", SYSTEM, {"plan": plan}) == {"members": 2}
    assert lg.expire_due(end + dt.timedelta(seconds=1)) == 1  # 反结转: the 500 expire with the plan again
    assert lg.balances(23)["reward"]["wallet"] == 0
    kinds = [h["kind"] for h in lg.history(23)]
    assert kinds == ["expire", "uncarry", "carry", "earn"]
    assert_sound(services)
