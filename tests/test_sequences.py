"""Sequences (card numbers): gap-free and unique, also under concurrent clients; a create that
fails after its number was drawn gives the number back."""
from __future__ import annotations

import threading

import pytest

from core_support import fresh_services, lab_documents, publish
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed


@pytest.fixture
def lab(databases, tmp_path_factory):
    s = fresh_services(databases, tmp_path_factory)
    publish(s, lab_documents())
    yield s
    s.engine.dispose()


@pytest.fixture
def membership(databases, tmp_path_factory):
    s = fresh_services(databases, tmp_path_factory, "membership")
    yield s
    s.engine.dispose()


def serials(s, entity, field):
    rows = s.queries.list(entity, SYSTEM, sort=["id"], limit=200, fields=[field]).rows
    return [r[field] for r in rows]


def test_a_create_failing_after_its_number_was_drawn_does_not_consume_it(lab):
    lab.records.create("lab.sample", {"title": "一"}, SYSTEM)
    # the parent row (and its number) is written before the child rows are checked
    with pytest.raises(ValidationFailed) as info:
        lab.records.create("lab.sample", {"title": "二", "lines": [{"item": "ok"}, {"qty": 3}]}, SYSTEM)
    assert info.value.field_errors == {"lines.1.item": ["This field is required."]}
    with pytest.raises(ValidationFailed):
        lab.records.create("lab.sample", {"title": "三", "count": -5}, SYSTEM)  # refused before drawing
    lab.records.create("lab.sample", {"title": "四", "lines": [{"item": "ok"}]}, SYSTEM)
    assert serials(lab, "lab.sample", "serial") == ["S-00001", "S-00002"]


def test_a_number_is_never_typed_in_or_changed(lab):
    rid = lab.records.create("lab.sample", {"title": "一"}, SYSTEM)
    with pytest.raises(ValidationFailed) as info:
        lab.records.update("lab.sample", rid, {"serial": "S-00099"}, SYSTEM, expected_version=1)
    assert info.value.field_errors == {"serial": ["This number is assigned automatically; leave it empty."]}
    assert lab.records.update("lab.sample", rid, {"serial": "S-00001", "title": "改"}, SYSTEM, expected_version=1) == 2
    assert serials(lab, "lab.sample", "serial") == ["S-00001"]


def test_card_numbers_follow_the_member_definition(membership):
    level = membership.records.create("membership.level", {"name": "普卡", "code": "SILVER", "level_value": 1}, SYSTEM)
    for i in range(3):
        membership.records.create("membership.member", {"name": f"会员{i}", "mobile": f"1390000000{i}", "joined_on": "2024-03-01", "level": level}, SYSTEM)
    assert serials(membership, "membership.member", "card_no") == ["VIP00000001", "VIP00000002", "VIP00000003"]


def run_concurrently(workers: int, job) -> list[BaseException]:
    """Start every worker at once (a barrier) and collect unexpected errors."""
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def run(n):
        try:
            barrier.wait(timeout=30)
            job(n)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    return errors


def concurrent_members(s, workers: int, per_worker: int):
    """Each worker creates members and also races the others for one shared mobile number."""
    outcomes = {"duplicate_refused": 0, "duplicate_created": 0}
    lock = threading.Lock()

    def job(n):
        for i in range(per_worker):
            s.records.create("membership.member", {"name": f"并发{n}-{i}", "mobile": f"137{n:04d}{i:04d}", "joined_on": "2024-03-01"}, SYSTEM)
            if i == per_worker // 2:
                try:
                    s.records.create("membership.member", {"name": f"抢号{n}", "mobile": "13999999999", "joined_on": "2024-03-01"}, SYSTEM)
                    key = "duplicate_created"
                except ValidationFailed as exc:
                    assert "mobile" in exc.field_errors
                    key = "duplicate_refused"
                with lock:
                    outcomes[key] += 1

    errors = run_concurrently(workers, job)
    assert errors == []
    assert outcomes == {"duplicate_refused": workers - 1, "duplicate_created": 1}
    n = workers * per_worker + 1
    cards = serials(s, "membership.member", "card_no")
    assert len(cards) == n
    assert sorted(cards) == [f"VIP{i:08d}" for i in range(1, n + 1)]  # no gaps, no duplicates


@pytest.mark.postgres_only
def test_concurrent_creates_on_postgres_get_gap_free_unique_card_numbers(membership):
    concurrent_members(membership, workers=8, per_worker=5)


def test_concurrent_creates_on_either_database_get_gap_free_unique_card_numbers(membership):
    # SQLite serialises writers with BEGIN IMMEDIATE; PostgreSQL locks the counter row.
    concurrent_members(membership, workers=4, per_worker=4)
