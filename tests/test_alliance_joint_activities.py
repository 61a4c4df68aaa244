"""Joint activities (issue 11): alliance merchants attached to a membership activity through the alliance
template's own link entity, one row per merchant and activity, shown on the activity page."""
from __future__ import annotations

import pytest

from crmkit.apps.alliance.joint_activities import LINK, merchants_of
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.packages import run_action

from alliance_support import al, al_app, make_merchant  # noqa: F401 - fixtures
from conftest import login


def test_merchants_attached_to_an_activity_once_and_shown_on_its_page(al, al_app):
    aid = al.records.create("membership.activity", {"title": "联盟美食节", "starts_at": "2026-06-01T10:00:00+08:00"}, SYSTEM)
    cafe, cinema = make_merchant(al, "CAFE"), make_merchant(al, "CINEMA")
    a = run_action(al, "alliance", "activity.attach_merchant", SYSTEM, {"activity": aid, "merchant": cafe})
    b = run_action(al, "alliance", "activity.attach_merchant", SYSTEM, {"activity": aid, "merchant": cafe, "status": "participating"})
    run_action(al, "alliance", "activity.attach_merchant", SYSTEM, {"activity": aid, "merchant": cinema})
    assert a == b
    rows = merchants_of(al, aid, SYSTEM)
    assert [(r["merchant"], r["status"]) for r in rows] == [(cafe, "participating"), (cinema, "invited")]
    with pytest.raises(ValidationFailed):  # the same merchant twice on one activity, written directly
        al.records.create(LINK, {"activity": aid, "merchant": cinema, "status": "invited"}, SYSTEM)
    al.records.update(LINK, rows[0]["id"], {"members_served": 42, "redemptions": 17}, SYSTEM, expected_version=rows[0]["row_version"])
    client = al_app.test_client()
    login(client)
    html = client.get(f"/alliance/activity/{aid}/merchants").get_data(as_text=True)
    assert "商家CAFE" in html and "商家CINEMA" in html and ">42<" in html and ">17<" in html
    detail = client.get(f"/e/membership.activity/{aid}").get_data(as_text=True)
    assert "/alliance/activity/%d/merchants" % aid in detail
