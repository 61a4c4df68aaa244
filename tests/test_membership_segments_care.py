"""Saved segments (counts against an independent computation, bad filters refused, the viewer's row scope) and
member care (consent per channel, skipped and counted; idempotent per campaign and member; scheduled sending)."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from crmkit.apps.membership import care, segments
from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.packages import run_action
from crmkit.runtime.storage import platform_tables as pt

from activity_support import CN, count_rows, make_segment, seed_members

GOLD_SH_BDAY = {"and": [{"field": "level", "op": "eq"}, {"field": "address", "op": "contains", "value": "上海"},
                        {"field": "birthday_this_month", "op": "eq", "value": True}]}


def _gold_sh(levels) -> dict:
    tree = {"and": [dict(c) for c in GOLD_SH_BDAY["and"]]}
    tree["and"][0]["value"] = levels["GOLD"]
    return tree


def test_segment_count_and_members_equal_an_independent_computation(services):
    levels, members = seed_members(services)
    month = dt.datetime.now(CN).month
    expected = {m["id"] for m in members if m["level"] == levels["GOLD"] and "上海" in (m.get("address") or "")
                and m.get("birthday") and dt.date.fromisoformat(m["birthday"]).month == month}
    assert 0 < len(expected) < len(members)
    seg = make_segment(services, _gold_sh(levels), "上海金卡本月生日")
    assert segments.count(services, seg, SYSTEM) == len(expected)
    assert set(segments.member_ids(services, seg, SYSTEM)) == expected
    page = segments.members(services, seg, SYSTEM, limit=200)
    assert {r["id"] for r in page.rows} == expected and page.total == len(expected)
    res = run_action(services, "membership", "segments.preview", SYSTEM, {"segment": seg})
    assert res["count"] == len(expected)
    stored = services.queries.get(segments.SEGMENT, seg, SYSTEM)
    assert stored["member_count"] == len(expected) and stored["counted_at"] is not None
    # an "or" segment: SMS-consenting is not a member field here, so: no birthday or in Beijing
    other = make_segment(services, {"or": [{"field": "birthday", "op": "is_empty"}, {"field": "address", "op": "contains", "value": "北京"}]}, "或")
    assert set(segments.member_ids(services, other, SYSTEM)) == {m["id"] for m in members if not m.get("birthday")
                                                                 or "北京" in (m.get("address") or "")}


@pytest.mark.parametrize("bad", ["not json", "[1, 2]", '{"field": "no_such_field", "op": "eq", "value": 1}',
                                 '{"field": "level", "op": "contains", "value": "x"}'])
def test_a_bad_segment_filter_is_refused_and_nothing_is_stored(services, bad):
    with pytest.raises(ValidationFailed) as exc:
        services.records.create(segments.SEGMENT, {"name": "坏分群", "filter": bad}, SYSTEM)
    assert "filter" in exc.value.field_errors
    assert count_rows(services, segments.SEGMENT) == 0


def test_segment_members_follow_the_viewers_row_scope(services):
    """Two viewers, one segment: a viewer whose policy row filter hides members sees fewer (the query service applies it)."""
    levels, members = seed_members(services, 30)
    seg = make_segment(services, {"field": "level", "op": "eq", "value": levels["GOLD"]})
    everyone = segments.count(services, seg, SYSTEM)
    hidden = {m["id"] for m in members[:10]}
    policy = services.policy
    original = policy.row_filter

    def narrower(actor, entity, table, catalog):
        base = original(actor, entity, table, catalog)
        if actor.id == 4242 and entity.key == "membership.member":
            return table.c.id.not_in(hidden)
        return base

    policy.row_filter = narrower
    try:
        viewer = Actor(id=4242, username="viewer", is_admin=True)
        visible = set(segments.member_ids(services, seg, viewer))
    finally:
        policy.row_filter = original
    gold = {m["id"] for m in members if m["level"] == levels["GOLD"]}
    assert everyone == len(gold) and visible == gold - hidden


def _deliveries(services) -> list[tuple]:
    d = pt.message_delivery
    with services.engine.connect() as c:
        return [tuple(r) for r in c.execute(select(d.c.record_id, d.c.channel, d.c.status).where(d.c.entity == "membership.member")
                                            .order_by(d.c.record_id))]


def test_care_skips_members_without_consent_and_never_sends_twice(services):
    levels, members = seed_members(services)
    seg = make_segment(services, {"field": "level", "op": "eq", "value": levels["GOLD"]})
    gold = [m for m in members if m["level"] == levels["GOLD"]]
    consenting = {m["id"] for m in gold if m["consent_sms"]}
    assert consenting and len(consenting) < len(gold)
    cid = services.records.create(care.CARE, {"name": "生日关怀", "segment": seg, "channel": "sms", "body": "{{ name }}，生日快乐！"}, SYSTEM)
    started = run_action(services, "membership", "care.start", SYSTEM, {"care": cid})
    assert started["status"] == "running"
    assert services.jobs.execute(started["job"]) == "succeeded"
    result = services.jobs.get(started["job"])["result"]
    assert result["queued"] == len(consenting) and result["no_consent"] == len(gold) - len(consenting) and result["already"] == 0
    sent = _deliveries(services)
    assert {r[0] for r in sent} == consenting and len(sent) == len(consenting)
    assert all(r[1] == "sms" and r[2] == "queued" for r in sent)
    c = services.queries.get(care.CARE, cid, SYSTEM)
    assert (c["status"], c["sent_count"], c["skipped_count"]) == ("done", len(consenting), len(gold) - len(consenting))
    assert count_rows(services, care.LOG, care=cid) == len(gold)
    body = services.messaging.delivery(services.messaging.deliveries(entity="membership.member", record_id=min(consenting))[0]["id"])["body"]
    assert body.endswith("生日快乐！") and body.startswith("会员")
    # a re-run (a retried job, a second worker) sends nothing and logs nothing new
    again = care.send_to_members(services, c, [m["id"] for m in gold], SYSTEM)
    assert again["already"] == len(gold) and again["queued"] == 0
    assert _deliveries(services) == sent and count_rows(services, care.LOG, care=cid) == len(gold)
    with pytest.raises(ValidationFailed):
        care.start(services, cid, SYSTEM)  # a finished campaign is not started again


def test_email_care_logs_members_without_an_address(services):
    levels, members = seed_members(services, 12)
    seg = make_segment(services, {"field": "id", "op": "gt", "value": 0})
    for m in members:
        if m.get("email"):
            from crmkit.runtime.privacy.consent import grant_consent

            grant_consent(services, "membership.member", m["id"], {"channel": "email", "purpose": "会员关怀", "version": "1"}, SYSTEM)
    cid = services.records.create(care.CARE, {"name": "邮件", "segment": seg, "channel": "email", "subject": "你好", "body": "Hi {{ name }}"}, SYSTEM)
    counts = care.send_to_members(services, services.queries.get(care.CARE, cid, SYSTEM), [m["id"] for m in members], SYSTEM)
    assert counts["no_address"] == sum(1 for m in members if not m.get("email"))
    assert counts["queued"] == sum(1 for m in members if m.get("email"))


def test_scheduled_care_waits_for_its_time(services):
    levels, _ = seed_members(services, 10)
    seg = make_segment(services, {"field": "level", "op": "eq", "value": levels["GOLD"]})
    at = dt.datetime(2030, 1, 1, 1, 0, tzinfo=dt.timezone.utc)
    cid = services.records.create(care.CARE, {"name": "新年", "segment": seg, "channel": "sms", "body": "新年快乐", "send_at": at.isoformat()}, SYSTEM)
    assert care.start(services, cid, SYSTEM, now=at - dt.timedelta(days=1))["status"] == "scheduled"
    early = services.jobs.submit(care.DUE_JOB, {"now": (at - dt.timedelta(minutes=5)).isoformat()}, actor=None)
    assert services.jobs.execute(early) == "succeeded" and services.jobs.get(early)["result"] == {"started": []}
    due = services.jobs.submit(care.DUE_JOB, {"now": (at + dt.timedelta(minutes=1)).isoformat()}, actor=None)
    assert services.jobs.execute(due) == "succeeded" and services.jobs.get(due)["result"] == {"started": [cid]}
    c = services.queries.get(care.CARE, cid, SYSTEM)
    assert c["status"] == "running" and c["job_id"]
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(pt.job).where(pt.job.c.kind == care.SEND_JOB)).scalar_one() == 1


def test_segment_built_with_the_filter_builder_is_saved_and_reopens(client, services, csrf_token):
    levels, members = seed_members(services, 40)
    month = dt.datetime.now(CN).month
    params = {"ff": ["level", "address", "birthday_this_month"], "fo": ["eq", "contains", "eq"], "fv": [str(levels["GOLD"]), "上海", "true"],
              "match": "all"}
    expected = {m["id"] for m in members if m["level"] == levels["GOLD"] and "上海" in (m.get("address") or "")
                and m.get("birthday") and dt.date.fromisoformat(m["birthday"]).month == month}
    page = client.get("/membership/activity/segment/build", query_string=params).get_data(as_text=True)
    assert f'data-segment-count="{len(expected)}"' in page and 'name="ff"' in page
    saved = client.post("/membership/activity/segment/build", data={**params, "name": "上海金卡本月生日", "csrf_token": csrf_token})
    assert saved.status_code == 302
    seg = services.queries.list(segments.SEGMENT, SYSTEM, filter={"field": "name", "op": "eq", "value": "上海金卡本月生日"}, limit=1).rows[0]
    assert set(segments.member_ids(services, seg["id"], SYSTEM)) == expected
    reopened = client.get(f"/membership/activity/segment/build?segment={seg['id']}").get_data(as_text=True)
    assert f'data-segment-count="{len(expected)}"' in reopened and "上海" in reopened
    panel = client.get(f"/membership/activity/segment/{seg['id']}/panel").get_data(as_text=True)
    assert f"<span data-segment-count>{len(expected)}</span>" in panel
    bad = client.post("/membership/activity/segment/build", data={"ff": ["level"], "fo": ["contains"], "fv": ["x"], "name": "坏",
                                                                  "csrf_token": csrf_token})
    assert bad.status_code == 422 and "data-segment-error" in bad.get_data(as_text=True)
    assert client.post("/membership/activity/segment/build", data={**params, "name": "无令牌"}).status_code == 400
    assert count_rows(services, segments.SEGMENT) == 1
