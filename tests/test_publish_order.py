"""A publish keeps other workers working: new columns exist before any worker switches to the new
definitions, renames switch together with them, and drops wait until no worker uses the old columns."""
from __future__ import annotations

import copy

from sqlalchemy import select

from conftest import make_settings
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.services import Services
from crmkit.runtime.storage import platform_tables as pt
from crmkit.runtime.storage.publish import CONTRACTING, EXPANDING, phases, publish_documents
from crmkit.runtime.storage.plan import Planner

MEMBER = "membership.member"


def member_docs(services) -> list[tuple[str, str, dict]]:
    """(kind, key, body) of the member's entity, form and view documents."""
    d = pt.document
    with services.engine.connect() as conn:
        rows = conn.execute(select(d.c.kind, d.c.key, d.c.body).where(d.c.key.startswith(MEMBER))).all()
    return [(k, key, copy.deepcopy(body)) for k, key, body in rows if k in ("entity", "form", "view")]


def rename_and_drop(node, old="notes", new="remark", dropped="address"):
    """Every reference to ``old`` renamed and to ``dropped`` removed, in a form or view document."""
    if isinstance(node, list):
        return [rename_and_drop(x) for x in node if not (x == dropped or (isinstance(x, dict) and x.get("field") == dropped))]
    if isinstance(node, dict):
        return {k: rename_and_drop(v) for k, v in node.items()}
    return new if node == old else node


def changed_member(services) -> list[RawDocument]:
    docs = member_docs(services)
    body = next(b for k, _, b in docs if k == "entity")
    body["fields"].append({"id": "fld_mbr_wechat", "name": "wechat_id", "type": "text", "label": {"zh": "微信号", "en": "WeChat ID"}, "max_length": 64})
    body["indexes"] = body.get("indexes", []) + [{"fields": ["wechat_id"]}]
    notes = next(f for f in body["fields"] if f["name"] == "notes")
    notes["name"] = "remark"  # a rename: the field keeps its id
    body["fields"] = [f for f in body["fields"] if f["name"] != "address"]  # a drop
    return [RawDocument("entity", "membership", body, "test:member.json")] + [
        RawDocument(k, "membership", rename_and_drop(b), f"test:{key}.json") for k, key, b in docs if k != "entity"]


def test_phases_put_new_columns_first_renames_with_the_switch_and_drops_last(services):
    plan = Planner(services.engine, services.store.preview(changed_member(services))).plan()
    expand, switch, contract = phases(plan)
    assert {s.op for s in expand} <= EXPANDING and {"add_column", "create_index"} <= {s.op for s in expand}
    assert [s.op for s in switch] == ["rename_column"]
    assert [s.op for s in contract] == ["drop_column"] and all(s.op in CONTRACTING for s in contract)


def test_another_worker_keeps_listing_through_every_step_of_a_publish(databases, tmp_path, services):
    mid = services.records.create(MEMBER, {"name": "周杰", "mobile": "13811112222", "joined_on": "2025-01-05", "notes": "老客户"}, SYSTEM)
    other = Services.build(make_settings(services.settings.database_url, tmp_path))  # another process's services
    assert "notes" in other.queries.list(MEMBER, SYSTEM, limit=5).rows[0]
    seen = []

    def between_steps(i, n, step):
        if step.op in EXPANDING or step.op in CONTRACTING:  # outside the switch transaction: another worker is running
            page = other.queries.list(MEMBER, SYSTEM, limit=5)  # would fail on a column that is not there (yet or any more)
            seen.append((step.op, sorted(k for k in page.rows[0] if k in ("notes", "remark", "wechat_id", "address"))))

    publish_documents(services.store, services.engine, changed_member(services), confirm=True, progress=between_steps)
    assert ("add_column", ["address", "notes"]) in seen  # before the switch the other worker still uses the old names
    assert seen[-1] == ("drop_column", ["remark", "wechat_id"])  # after it, the new ones; the dropped column is unused
    row = other.queries.get(MEMBER, mid, SYSTEM)
    assert row["remark"] == "老客户" and row["wechat_id"] is None and "address" not in row
    other.engine.dispose()
