"""Concurrent tree changes: crossing moves never build a cycle, and no path is left stale."""
from __future__ import annotations

import threading

import pytest

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed

from org_support import assert_paths_consistent, org, paths


def race(jobs) -> list:
    """Run the jobs at the same moment (a barrier); returns each job's outcome: "ok", "refused" or the exception."""
    barrier = threading.Barrier(len(jobs))
    outcomes: list = [None] * len(jobs)

    def run(i, job):
        try:
            barrier.wait(timeout=30)
            job()
            outcomes[i] = "ok"
        except ValidationFailed:
            outcomes[i] = "refused"
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    return outcomes


def crossing_moves(app, rounds: int) -> None:
    """A and B are siblings with children A1 and B1. Moving A under B1 while B moves under A1 would close a loop."""
    svc = org(app)
    for n in range(rounds):
        root = svc.create_unit(SYSTEM, name=f"Root {n}", code=f"root-{n}", kind="group")
        a = svc.create_unit(SYSTEM, name="A", code=f"a-{n}", kind="region", parent_id=root)
        b = svc.create_unit(SYSTEM, name="B", code=f"b-{n}", kind="region", parent_id=root)
        a1 = svc.create_unit(SYSTEM, name="A1", code=f"a1-{n}", kind="company", parent_id=a)
        b1 = svc.create_unit(SYSTEM, name="B1", code=f"b1-{n}", kind="company", parent_id=b)
        outcomes = race([lambda a=a, b1=b1: svc.move_unit(SYSTEM, a, b1), lambda b=b, a1=a1: svc.move_unit(SYSTEM, b, a1)])
        assert sorted(outcomes) == ["ok", "refused"], outcomes
        assert_paths_consistent(app)
        p = paths(app)
        # Both regions are still under the root, one inside the other's subtree.
        assert p[a][1].startswith(f"/{root}/") and p[b][1].startswith(f"/{root}/")


def creates_during_a_move(app, workers: int) -> None:
    """Units created under a subtree while it moves get paths under its new place."""
    svc = org(app)
    root = svc.create_unit(SYSTEM, name="Root", code="root", kind="group")
    east = svc.create_unit(SYSTEM, name="East", code="east", kind="region", parent_id=root)
    west = svc.create_unit(SYSTEM, name="West", code="west", kind="region", parent_id=root)
    company = svc.create_unit(SYSTEM, name="Co", code="co", kind="company", parent_id=east)
    jobs = [lambda: svc.move_unit(SYSTEM, company, west)]
    jobs += [lambda i=i: svc.create_unit(SYSTEM, name=f"Dept {i}", code=f"dept-{i}", kind="department", parent_id=company)
             for i in range(workers)]
    assert race(jobs) == ["ok"] * (workers + 1)
    assert_paths_consistent(app)
    p = paths(app)
    depts = [uid for uid, (parent, _) in p.items() if parent == company]
    assert len(depts) == workers
    assert all(p[d][1].startswith(f"/{root}/{west}/{company}/") for d in depts)


@pytest.mark.postgres_only
def test_crossing_moves_on_postgres_never_build_a_cycle(app):
    crossing_moves(app, rounds=6)


@pytest.mark.postgres_only
def test_units_created_during_a_move_on_postgres_land_under_the_new_place(app):
    creates_during_a_move(app, workers=6)


def test_crossing_moves_on_either_database_never_build_a_cycle(app):
    # SQLite serialises writers with BEGIN IMMEDIATE; PostgreSQL takes the tree lock.
    crossing_moves(app, rounds=2)
    creates_during_a_move(app, workers=3)
