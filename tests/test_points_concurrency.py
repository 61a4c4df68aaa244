"""Real concurrent clients on PostgreSQL: threads with their own connections, released together by a barrier."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from crmkit.apps.membership.ledger import InsufficientPoints, LedgerService
from crmkit.apps.membership.ledger import tables as lt
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.db import make_engine

from ledger_support import assert_sound

pytestmark = pytest.mark.postgres_only


def race(n: int, job) -> list:
    """Run ``job(i)`` in ``n`` threads at the same moment; returns each outcome (the result or the exception)."""
    barrier = threading.Barrier(n)
    outcomes: list = [None] * n

    def run(i):
        try:
            barrier.wait(timeout=30)
            outcomes[i] = job(i)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    return outcomes


@pytest.fixture
def wide_engine(services):
    """An engine whose pool gives every thread its own connection."""
    engine = make_engine(services.engine.url.render_as_string(hide_password=False), pool_size=60, max_overflow=0)
    yield engine
    engine.dispose()


def test_sixteen_clients_redeem_the_last_hundred_points_once(services, wide_engine):
    lg = LedgerService(wide_engine)
    lg.earn(1, 100, key="c:seed", actor=SYSTEM)
    outcomes = race(16, lambda i: lg.redeem(1, 100, key=f"c:redeem:{i}", actor=SYSTEM))
    wins = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(wins) == 1, outcomes
    assert all(isinstance(o, InsufficientPoints) for o in outcomes if isinstance(o, BaseException)), outcomes
    assert lg.balances(1)["reward"]["wallet"] == 0
    assert_sound(services)


def test_one_key_sent_fifty_times_at_once_posts_once(services, wide_engine):
    lg = LedgerService(wide_engine)
    outcomes = race(50, lambda i: lg.earn(2, 30, key="c:same-order", actor=SYSTEM, source_type="order", source_id=99))
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    assert len({o.entry_id for o in outcomes}) == 1
    assert sum(o.created for o in outcomes) == 1
    with services.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(lt.entry).where(lt.entry.c.idempotency_key == "c:same-order")).scalar_one() == 1
    assert lg.balances(2)["reward"]["wallet"] == 30
    assert_sound(services)


def test_first_postings_for_a_new_member_race_safely(services, wide_engine):
    """Sixteen different earn keys for a member whose accounts do not exist yet: every point arrives."""
    lg = LedgerService(wide_engine)
    outcomes = race(16, lambda i: lg.earn(3, 10 + i, key=f"c:new:{i}", actor=SYSTEM))
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    assert lg.balances(3)["reward"]["wallet"] == sum(10 + i for i in range(16))
    assert_sound(services)


def test_concurrent_earns_and_redeems_for_one_member_lose_nothing(services, wide_engine):
    lg = LedgerService(wide_engine)
    lg.earn(4, 1000, key="c:base", actor=SYSTEM)

    def job(i):
        if i % 2:
            return lg.earn(4, 7, key=f"c:mix-earn:{i}", actor=SYSTEM)
        return lg.redeem(4, 5, key=f"c:mix-red:{i}", actor=SYSTEM)

    outcomes = race(16, job)
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    assert lg.balances(4)["reward"]["wallet"] == 1000 + 8 * 7 - 8 * 5
    assert_sound(services)


def test_the_last_stock_item_is_redeemed_once(services, wide_engine):
    from crmkit.apps.membership.ledger import RedemptionRefused
    from crmkit.apps.membership.redemption import redeem_reward

    from ledger_support import make_member

    item = services.records.create("membership.reward_item", {"name": "限量礼盒", "code": "LAST", "kind": "goods", "points": 10, "stock": 1}, SYSTEM)
    members = [make_member(services, name=f"会员{i}", mobile=f"1380013{i:04d}") for i in range(16)]
    lg = LedgerService(wide_engine)
    for m in members:
        lg.earn(m, 100, key=f"fund:{m}", actor=SYSTEM)
    outcomes = race(16, lambda i: redeem_reward(services, members[i], item, 1, actor=SYSTEM, key=f"last:{i}", ledger=lg))
    wins = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(wins) == 1, outcomes
    assert all(isinstance(o, RedemptionRefused) for o in outcomes if isinstance(o, BaseException)), outcomes
    assert services.queries.get("membership.reward_item", item, SYSTEM)["stock"] == 0
    assert sum(lg.balances(m)["reward"]["wallet"] for m in members) == 16 * 100 - 10
    assert_sound(services)
