"""Activities under real concurrency (PostgreSQL, each thread on its own connection): awarding the points twice at
the same moment posts each attendee's points once; two desks checking one member in at once record one check-in."""
from __future__ import annotations

import pytest

from crmkit.apps.membership import activities
from crmkit.runtime.actor import SYSTEM

from activity_support import count_rows, make_activity
from ledger_support import assert_sound, entry_count, ledger
from test_membership_activities import _members, _reg
from test_points_concurrency import race

pytestmark = pytest.mark.postgres_only


def test_concurrent_awarding_posts_each_attendees_points_once(services):
    ms = _members(services, 6)
    aid = make_activity(services, points=70)
    for m in ms:
        activities.check_in(services, aid, SYSTEM, card_no=m["card_no"])
    outcomes = race(2, lambda i: activities.award_points(services, aid, SYSTEM))
    assert not any(isinstance(o, BaseException) for o in outcomes), outcomes
    assert sum(o["posted"] for o in outcomes) == 6 and sum(o["already"] for o in outcomes) == 6
    for m in ms:
        assert entry_count(services, idempotency_key=activities.points_key(aid, m["id"])) == 1
        assert ledger(services).balances(m["id"])["reward"]["wallet"] == 70
        assert _reg(services, aid, m["id"])["points_awarded"] == 70
    assert services.queries.get(activities.ACTIVITY, aid, SYSTEM)["points_issued"] == 420
    assert_sound(services)


def test_two_desks_checking_one_member_in_at_once_record_one_check_in(services):
    ms = _members(services, 2)
    aid = make_activity(services)
    activities.register(services, aid, ms[0]["id"], SYSTEM)
    for m in ms:  # a registered member, and a walk-in
        outcomes = race(2, lambda i, m=m: activities.check_in(services, aid, SYSTEM, card_no=m["card_no"]))
        wins = [o for o in outcomes if isinstance(o, dict)]
        assert len(wins) == 1, outcomes
        assert all(isinstance(o, activities.CheckInRefused) for o in outcomes if o not in wins), outcomes
    assert count_rows(services, activities.REG, activity=aid, status="attended") == 2
