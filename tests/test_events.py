"""Outbox dispatch: events reach subscribers after commit, in order per record, once, marked delivered."""
from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import select

from api_support import member
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.events import Event, EventBus
from crmkit.runtime.storage import platform_tables as pt

M = "membership.member"


def outbox_rows(services):
    with services.engine.connect() as conn:
        return conn.execute(select(pt.outbox).order_by(pt.outbox.c.id)).mappings().all()


def test_events_reach_subscribers_once_in_order_and_are_marked(services):
    seen: list[tuple[str, int]] = []
    services.events.subscribe(M, lambda e: seen.append((e.topic, e.record_id)))
    by_topic: list[int] = []
    services.events.subscribe("record.updated", lambda e: by_topic.append(e.record_id))
    rid = services.records.create(M, member(), SYSTEM)
    services.records.update(M, rid, {"name": "李娜"}, SYSTEM, expected_version=1)
    services.records.delete(M, rid, SYSTEM)
    assert services.background.outbox.pending() == 3
    assert services.background.outbox.dispatch() == 3
    assert seen == [("record.created", rid), ("record.updated", rid), ("record.deleted", rid)] and by_topic == [rid]
    assert all(r["dispatched_at"] is not None and r["attempts"] == 1 for r in outbox_rows(services))
    assert services.background.outbox.dispatch() == 0 and len(seen) == 3  # delivered events do not come back


def test_a_failing_handler_holds_back_that_records_later_events_only(services):
    seen: list[tuple[str, int]] = []
    broken = {"on": True, "id": None}

    def handler(e: Event):
        if broken["on"] and e.topic == "record.created" and e.record_id == broken["id"]:
            raise RuntimeError("subscriber down")
        seen.append((e.topic, e.record_id))

    services.events.subscribe("*", handler)
    bad = broken["id"] = services.records.create(M, member(name="坏"), SYSTEM)
    services.records.update(M, bad, {"name": "好"}, SYSTEM, expected_version=1)
    good = services.records.create(M, member(name="好", mobile="13900139000"), SYSTEM)
    assert services.background.outbox.dispatch() == 1
    assert seen == [("record.created", good)]
    failed = outbox_rows(services)[0]
    assert failed["dispatched_at"] is None and failed["attempts"] == 1 and "subscriber down" in failed["last_error"]
    broken["on"] = False
    assert services.background.outbox.dispatch() == 2
    assert seen[1:] == [("record.created", bad), ("record.updated", bad)]


def test_commit_wakes_the_dispatcher_through_the_queue_once_per_burst(services):
    huey = services.background.queue.huey
    clock = [1000.0]
    services.background._wake.clock = lambda: clock[0]
    before = huey.pending_count()
    services.records.create(M, member(), SYSTEM)
    assert huey.pending_count() == before + 1
    for i in range(5):  # a burst within the second: one trailing wake-up a second later covers all of it
        clock[0] += 0.1
        services.records.create(M, member(name=f"批量{i}", mobile=f"1390013900{i}"), SYSTEM)
    assert huey.pending_count() == before + 2  # the immediate wake-up and one trailing, delayed one
    tasks = [huey.dequeue(), huey.dequeue()]
    assert [t.eta is not None for t in tasks] == [False, True]
    huey.execute(tasks[0])  # what a worker does with the wake-up: dispatch everything pending
    assert services.background.outbox.pending() == 0
    clock[0] += 1.0
    services.records.create(M, member(name="之后", mobile="13700137000"), SYSTEM)
    assert huey.pending_count() == before + 1  # the next second wakes at once again


def test_a_rolled_back_write_leaves_no_event(services):
    from crmkit.runtime.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        services.records.create(M, member(mobile="not a phone"), SYSTEM)
    assert outbox_rows(services) == []


def test_subscribe_keys_are_checked():
    bus = EventBus()
    with pytest.raises(ValueError):
        bus.subscribe("", lambda e: None)
    with pytest.raises(TypeError):
        bus.subscribe("*", None)


@pytest.mark.postgres_only
def test_two_concurrent_dispatchers_deliver_each_event_once(services):
    ids = [services.records.create(M, member(name=f"会员{i}", mobile=f"1380013{i:04d}"), SYSTEM) for i in range(30)]
    for rid in ids[:10]:
        services.records.update(M, rid, {"name": "改名"}, SYSTEM, expected_version=1)
    counts: Counter = Counter()
    order: dict[int, list[str]] = {}
    lock = threading.Lock()

    def handler(e: Event):
        with lock:
            counts[e.id] += 1
            order.setdefault(e.record_id, []).append(e.topic)

    services.events.subscribe("*", handler)
    other = services.background.outbox.__class__(services.engine, services.events)
    barrier = threading.Barrier(2)
    results = []

    def run(dispatcher, name):
        barrier.wait()
        for _ in range(20):
            results.append(dispatcher.dispatch(holder=name))
            if not dispatcher.pending():
                return

    threads = [threading.Thread(target=run, args=(d, n)) for d, n in ((services.background.outbox, "a"), (other, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(counts) == 40 and set(counts.values()) == {1}
    assert all(order[rid] == ["record.created", "record.updated"] for rid in ids[:10])
    assert services.background.outbox.pending() == 0
