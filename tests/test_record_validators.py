"""App validators (AppHooks.validator) run inside the record service's transaction; RecordService.transaction
commits several writes together."""
from __future__ import annotations

import pytest

from core_support import fresh_services, lab_documents, publish
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import ValidationFailed
from crmkit.runtime.jobs import JobRegistry
from crmkit.runtime.packages import AppHooks


@pytest.fixture
def lab(databases, tmp_path_factory):
    s = fresh_services(databases, tmp_path_factory)
    publish(s, lab_documents())
    yield s
    s.engine.dispose()


def test_validator_errors_stop_the_write_and_computed_values_are_stored(lab):
    seen = []

    def no_x_codes(write):
        seen.append((write.creating, write.get("name")))
        if (write.get("code") or "").startswith("X"):
            return {"code": ["no X codes"]}
        write.values["checked_by"] = "hook"  # a read-only field, completed by the hook
        return None

    hooks = AppHooks()
    hooks.validator("lab.category")(no_x_codes)
    hooks.attach(lab.records, JobRegistry())
    with pytest.raises(ValidationFailed) as exc:
        lab.records.create("lab.category", {"name": "甲", "code": "X1"}, SYSTEM)
    assert exc.value.field_errors == {"code": ["no X codes"]}
    assert lab.queries.list("lab.category", SYSTEM, count="exact").total == 0
    cid = lab.records.create("lab.category", {"name": "乙", "code": "B1"}, SYSTEM)
    row = lab.queries.get("lab.category", cid, SYSTEM)
    assert row["checked_by"] == "hook"
    with pytest.raises(ValidationFailed):
        lab.records.update("lab.category", cid, {"code": "X2"}, SYSTEM, expected_version=row["row_version"])
    assert lab.queries.get("lab.category", cid, SYSTEM)["code"] == "B1"
    with pytest.raises(ValidationFailed):
        lab.records.bulk_update("lab.category", [cid], {"code": "X3"}, SYSTEM)
    assert seen[:2] == [(True, "甲"), (True, "乙")] and seen[2] == (False, "乙")
    # an app's listener writing inside its own transaction goes through the same validators
    with pytest.raises(ValidationFailed):
        with lab.records.transaction() as tx:
            lab.records.update_within(tx.conn, "lab.category", cid, {"code": "X4"}, SYSTEM)
    assert lab.queries.get("lab.category", cid, SYSTEM)["code"] == "B1"
    with lab.records.transaction() as tx:
        lab.records.update_within(tx.conn, "lab.category", cid, {"name": "乙改"}, SYSTEM)
    assert seen[-1] == (False, "乙改") and lab.queries.get("lab.category", cid, SYSTEM)["name"] == "乙改"


def test_a_record_transaction_commits_all_or_nothing(lab):
    with pytest.raises(ValidationFailed):
        with lab.records.transaction() as tx:
            tx.create("lab.category", {"name": "一", "code": "A1"}, SYSTEM)
            tx.create("lab.category", {"name": "二", "code": "A1"}, SYSTEM)  # unique code: refused
    assert lab.queries.list("lab.category", SYSTEM, count="exact").total == 0
    with lab.records.transaction() as tx:
        a = tx.create("lab.category", {"name": "一", "code": "A1"}, SYSTEM)
        tx.update("lab.category", a, {"name": "一改"}, SYSTEM, expected_version=1)
    assert lab.queries.get("lab.category", a, SYSTEM)["name"] == "一改"


def test_app_jobs_register_with_their_schedule():
    from huey import crontab

    hooks = AppHooks()
    hooks.job("lab.nightly", lambda ctx, payload: None, schedule=crontab(minute="0", hour="3"), payload={"days": 3})
    registry = JobRegistry()
    hooks.attach(None, registry)
    assert "lab.nightly" in registry and [p.payload for p in registry.periodic_jobs()] == [{"days": 3}]
