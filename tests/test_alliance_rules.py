"""Offer rules as pure functions: validity, blackout dates, levels, merchant status and the benefit amount."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from crmkit.apps.alliance.errors import OfferRefused
from crmkit.apps.alliance.offers import benefit_amount, check_merchant, check_offer

DAY = dt.date(2026, 10, 3)
OFFER = {"name": "9 折", "active": True, "valid_from": dt.date(2026, 1, 1), "valid_until": dt.date(2026, 12, 31), "kind": "discount",
         "discount_rate": D("10")}


def refused(**kw) -> str:
    args = {"level_ids": set(), "blackouts": [], "member_level": 1, "day": DAY, **kw}
    offer = {**OFFER, **args.pop("offer", {})}
    with pytest.raises(OfferRefused) as exc:
        check_offer(offer, **args)
    return exc.value.message.en


def test_an_offer_within_its_rules_passes():
    assert check_offer(OFFER, level_ids={1, 2}, blackouts=[(dt.date(2026, 10, 8), dt.date(2026, 10, 9))], member_level=2, day=DAY) is None


def test_blackout_dates_include_both_ends():
    assert "blackout 2026-10-01 – 2026-10-03" in refused(blackouts=[(dt.date(2026, 10, 1), dt.date(2026, 10, 3))])
    assert "blackout" in refused(blackouts=[(DAY, DAY)])


def test_levels_validity_and_active_flag():
    assert "level" in refused(level_ids={2, 3}, member_level=1)
    assert "level" in refused(level_ids={2}, member_level=None)
    assert "not valid today" in refused(offer={"valid_until": dt.date(2026, 10, 2)})
    assert "not valid today" in refused(offer={"valid_from": dt.date(2026, 10, 4)})
    assert "not active" in refused(offer={"active": False})


def test_merchant_must_be_formal_and_under_contract():
    m = {"name": "咖啡馆", "workflow_state": "formal", "contract_start": dt.date(2026, 1, 1), "contract_end": dt.date(2026, 10, 3)}
    assert check_merchant(m, DAY) is None
    with pytest.raises(OfferRefused, match="contract"):
        check_merchant(m, DAY + dt.timedelta(days=1))
    with pytest.raises(OfferRefused, match="formal"):
        check_merchant({**m, "workflow_state": "applying"}, DAY)


def test_benefit_amounts():
    assert benefit_amount(OFFER, D("88.85")) == D("8.89")  # 10 % of the bill, half up to the cent
    assert benefit_amount({"kind": "amount", "amount_off": D("20")}, D("15")) == D("15")  # never more than the bill
    assert benefit_amount({"kind": "amount", "amount_off": D("20")}, None) == D("20")
    assert benefit_amount({"kind": "points", "amount_off": D("30")}, D("10")) == D("30")  # a benefit bought with points
    with pytest.raises(OfferRefused, match="bill"):
        benefit_amount(OFFER, None)
