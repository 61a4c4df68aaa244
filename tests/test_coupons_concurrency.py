"""One-time use under real concurrency (PostgreSQL): the same coupon redeemed by many clients at once is used once."""
from __future__ import annotations

import pytest

from crmkit.apps.membership import coupons
from crmkit.runtime.actor import SYSTEM

from ledger_support import make_member
from test_coupons import coupon, coupon_count, template
from test_points_concurrency import race

pytestmark = pytest.mark.postgres_only


def test_the_last_coupon_redeemed_concurrently_succeeds_once(services):
    m, tpl = make_member(services), template(services)
    code = coupon(services, coupons.issue(services, tpl, m, SYSTEM))["code"]
    outcomes = race(8, lambda i: coupons.redeem(services, code, SYSTEM, amount=f"{100 + i}"))
    wins = [o for o in outcomes if isinstance(o, coupons.Redeemed)]
    assert len(wins) == 1, outcomes
    assert all(isinstance(o, coupons.CouponRefused) for o in outcomes if o not in wins), outcomes
    c = coupon(services, wins[0].coupon_id)
    assert c["status"] == "used" and str(c["order_amount"]) == str(wins[0].pay + wins[0].discount)
    assert c["row_version"] == 2 and coupon_count(services, status="used") == 1


def test_expiry_racing_a_redemption_never_overwrites_a_used_coupon(services):
    import datetime as dt

    m, tpl = make_member(services), template(services, valid_days=1)
    now = dt.datetime.now(dt.timezone.utc)
    ids = [coupons.issue(services, tpl, m, SYSTEM, now=now - dt.timedelta(hours=23, minutes=59, seconds=50)) for _ in range(6)]
    codes = [coupon(services, i)["code"] for i in ids]

    def job(i):
        if i == 0:
            return coupons.expire_due(services, now + dt.timedelta(seconds=30))
        return coupons.redeem(services, codes[i], SYSTEM, amount="150", now=now)

    outcomes = race(6, job)
    used = {ids[i] for i in range(1, 6) if isinstance(outcomes[i], coupons.Redeemed)}
    for i in ids:
        status = coupon(services, i)["status"]
        assert status == ("used" if i in used else "expired"), (i, status, outcomes)
