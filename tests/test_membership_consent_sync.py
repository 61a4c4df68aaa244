"""The member's consent tick boxes are real consents: messaging (which checks consent records) follows them."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import CrmkitError
from crmkit.runtime.privacy.consent import grant_consent, has_consent
from crmkit.runtime.privacy.tables import consent
from crmkit.runtime.storage import platform_tables as pt

MEMBER = "membership.member"


def member(services, **data):
    return services.records.create(MEMBER, {"name": "林小满", "mobile": "13900001111", "joined_on": "2026-01-05", **data}, SYSTEM)


def consents(services, rid):
    with services.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(consent).where(consent.c.entity == MEMBER, consent.c.record_id == rid)
                                              .order_by(consent.c.id)).mappings()]


def may(services, rid, channel, purpose=None):
    with services.engine.connect() as conn:
        return has_consent(conn, MEMBER, rid, channel, purpose)


def privacy_actions(services, rid):
    with services.engine.connect() as conn:
        return [r.action for r in conn.execute(select(pt.audit.c.action).where(pt.audit.c.category == "privacy", pt.audit.c.entity == MEMBER,
                                                                                pt.audit.c.record_id == rid).order_by(pt.audit.c.id))]


def test_ticked_boxes_grant_the_channel_for_every_purpose(services):
    rid = member(services, consent_sms=True, consent_wechat=True)
    assert [(c["channel"], c["purpose"], c["version"], c["withdrawn_at"]) for c in consents(services, rid)] == [
        ("sms", "*", "member-record", None), ("wechat", "*", "member-record", None)]
    # the purposes the shipped automations send with, and care (no purpose)
    assert all(may(services, rid, "sms", p) for p in ("welcome", "birthday", "wakeup", None))
    assert not may(services, rid, "email") and not may(services, rid, "email", "welcome")
    assert privacy_actions(services, rid) == ["consent_grant", "consent_grant"]


def test_clearing_a_box_withdraws_every_consent_of_that_channel(services):
    rid = member(services, consent_sms=True)
    grant_consent(services, MEMBER, rid, {"channel": "sms", "purpose": "birthday", "version": "2026-01"}, SYSTEM)  # given elsewhere
    grant_consent(services, MEMBER, rid, {"channel": "email", "purpose": "birthday", "version": "2026-01"}, SYSTEM)
    services.records.update(MEMBER, rid, {"consent_sms": False}, SYSTEM, expected_version=1)
    assert not may(services, rid, "sms") and not may(services, rid, "sms", "birthday")
    assert may(services, rid, "email", "birthday")  # other channels untouched
    assert [c["channel"] for c in consents(services, rid) if c["withdrawn_at"] is None] == ["email"]
    # ticking it again grants anew; history stays
    services.records.update(MEMBER, rid, {"consent_sms": True}, SYSTEM, expected_version=2)
    assert may(services, rid, "sms", "wakeup")
    assert len([c for c in consents(services, rid) if c["channel"] == "sms"]) == 3


def test_other_changes_leave_consents_alone(services):
    rid = member(services, consent_email=True)
    before = consents(services, rid)
    services.records.update(MEMBER, rid, {"name": "林小满（改）"}, SYSTEM, expected_version=1)
    services.records.update(MEMBER, rid, {"consent_email": True}, SYSTEM, expected_version=2)  # unchanged value
    assert consents(services, rid) == before


def test_a_refused_member_write_grants_nothing(services):
    member(services, consent_sms=True)
    with pytest.raises(CrmkitError):
        member(services, consent_sms=True)  # the same mobile: refused
    with services.engine.connect() as conn:
        assert conn.execute(select(consent.c.record_id).where(consent.c.entity == MEMBER)).scalars().all() == [
            conn.execute(select(consent.c.record_id)).scalar()]


def test_demo_members_who_ticked_sms_can_be_messaged(services):
    from crmkit.apps.membership.demo import seed_demo
    from crmkit.runtime.packages import SeedContext

    seed_demo(SeedContext(records=services.records, queries=services.queries, catalog=services.store.catalog(), actor=SYSTEM, size=30))
    rows = services.queries.list(MEMBER, SYSTEM, fields=["id", "consent_sms"], limit=100).rows
    ticked = [r["id"] for r in rows if r["consent_sms"]]
    assert ticked and len(ticked) < len(rows)
    assert {r["id"] for r in rows if may(services, r["id"], "sms", "welcome")} == set(ticked)
