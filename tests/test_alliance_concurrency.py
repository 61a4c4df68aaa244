"""Counter clerks racing for the last allowed use of an offer, with real concurrent connections on PostgreSQL."""
from __future__ import annotations

import threading
from decimal import Decimal as D
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from alliance_support import al, al_app, earn, make_member, make_merchant, make_offer  # noqa: F401
from crmkit.apps.alliance.errors import OfferRefused
from crmkit.apps.alliance.offers import redeem_offer
from crmkit.apps.membership.ledger import InsufficientPoints, LedgerService, check_invariants
from crmkit.apps.membership.ledger import tables as lt
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.db import make_engine

pytestmark = pytest.mark.postgres_only


def race(n: int, job) -> list:
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
def wide(al):
    """The services with an engine whose pool gives every thread its own connection."""
    engine = make_engine(al.engine.url.render_as_string(hide_password=False), pool_size=40, max_overflow=0)
    yield SimpleNamespace(records=al.records, queries=al.queries, store=al.store, engine=engine)
    engine.dispose()


def used(al, offer) -> tuple[int, int]:
    rows = al.queries.list("alliance.redemption", SYSTEM, filter={"field": "offer", "op": "eq", "value": offer}, count="exact").total
    return al.queries.get("alliance.offer", offer, SYSTEM)["used_count"], rows


def test_the_last_use_of_a_total_limit_succeeds_once(al, wide):
    a = make_merchant(al, "A")
    members = [make_member(al, i) for i in range(1, 13)]
    offer = make_offer(al, a, total_limit=3)
    redeem_offer(al, merchant_id=a, offer_id=offer, member_id=members[0], actor=SYSTEM, key="pre1", bill=D("10"))
    redeem_offer(al, merchant_id=a, offer_id=offer, member_id=members[1], actor=SYSTEM, key="pre2", bill=D("10"))
    outcomes = race(12, lambda i: redeem_offer(wide, merchant_id=a, offer_id=offer, member_id=members[i], actor=SYSTEM, key=f"r{i}", bill=D("10")))
    wins = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(wins) == 1, outcomes
    assert all(isinstance(o, OfferRefused) and "used up" in o.message.en for o in outcomes if isinstance(o, BaseException)), outcomes
    assert used(al, offer) == (3, 3)


def test_one_member_racing_for_the_last_per_member_use_of_a_points_offer_gets_it_once(al, wide):
    a = make_merchant(al, "A")
    m = make_member(al, 1)
    earn(al, m, 10_000, "seed")
    offer = make_offer(al, a, kind="points", points_cost=100, amount_off="5", funded_by="club", per_member_limit=2)
    redeem_offer(al, merchant_id=a, offer_id=offer, member_id=m, actor=SYSTEM, key="first")
    outcomes = race(10, lambda i: redeem_offer(wide, merchant_id=a, offer_id=offer, member_id=m, actor=SYSTEM, key=f"p{i}"))
    wins = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(wins) == 1, outcomes
    assert all(isinstance(o, (OfferRefused, InsufficientPoints)) for o in outcomes if isinstance(o, BaseException)), outcomes
    assert used(al, offer) == (2, 2)
    assert LedgerService(al.engine).balances(m)["reward"]["wallet"] == 10_000 - 200
    with al.engine.connect() as c:
        assert check_invariants(c) == []
        assert c.execute(select(func.count()).select_from(lt.entry).where(lt.entry.c.kind == "redeem")).scalar_one() == 2


def test_one_request_key_sent_at_once_redeems_once(al, wide):
    a = make_merchant(al, "A")
    m = make_member(al, 1)
    earn(al, m, 1000, "seed")
    offer = make_offer(al, a, kind="points", points_cost=100, amount_off="5", funded_by="club")
    outcomes = race(8, lambda i: redeem_offer(wide, merchant_id=a, offer_id=offer, member_id=m, actor=SYSTEM, key="same"))
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    assert len({o.redemption_id for o in outcomes}) == 1 and sum(o.created for o in outcomes) == 1
    assert used(al, offer) == (1, 1)
    assert LedgerService(al.engine).balances(m)["reward"]["wallet"] == 900
