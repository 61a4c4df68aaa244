"""BuilderService: drafts with revisions, publish through a validated schema plan, versions and restore."""
from __future__ import annotations

import pytest
from sqlalchemy import inspect, select

from builder_support import ADMIN, builder_of
from crmkit.builder import edits, layout
from crmkit.builder.drafts import DraftConflict
from crmkit.runtime.actor import SYSTEM, Actor
from crmkit.runtime.audit import flush_sealer
from crmkit.runtime.errors import DefinitionError, PermissionDenied, PlanRefused
from crmkit.runtime.storage import platform_tables as pt

MEMBER = "membership.member"
OPTIONS = [{"value": "sh", "label": {"zh": "上海店", "en": "Shanghai"}, "color": "#2563eb"},
           {"value": "bj", "label": {"zh": "北京店", "en": "Beijing"}}]


def columns(services, table="membership_member"):
    with services.engine.connect() as conn:
        return {c["name"]: c for c in inspect(conn).get_columns(table)}


def audit_actions(services, entity=MEMBER):
    flush_sealer(services.engine)  # ordered by the chain: wait for PostgreSQL's background seal
    with services.engine.connect() as conn:
        return [r.action for r in conn.execute(select(pt.audit.c.action).where(pt.audit.c.category == "builder", pt.audit.c.entity == entity)
                                               .order_by(pt.audit.c.seq))]


def add_store_field(b, revision=0):
    return b.edit(ADMIN, MEMBER, revision, "add_field",
                  lambda d: edits.add_field(d, b.services.field_types, "single_select", "preferred_store",
                                            {"label": {"zh": "常去门店", "en": "Preferred store"}, "options": OPTIONS}))


def test_edit_collects_in_a_draft_and_publish_adds_the_column(services):
    b = builder_of(services)
    draft = add_store_field(b)
    assert draft.revision == 1 and any(f["name"] == "preferred_store" for f in draft.entity["fields"])
    assert "preferred_store" not in columns(services)  # nothing live until publish
    assert not services.store.catalog().entity(MEMBER).has_field("preferred_store")
    preview = b.preview(ADMIN, MEMBER)
    assert preview.ok and [s.op for s in preview.plan.steps] == ["add_column"]
    assert [c.key for c in preview.changes] == [MEMBER]
    assert any(ch["path"].startswith("/fields/") for ch in preview.changes[0].diff)
    b.publish(ADMIN, MEMBER, draft.revision)
    assert "preferred_store" in columns(services)
    assert services.store.catalog().entity(MEMBER).field("preferred_store").opt("options")[0]["color"] == "#2563eb"
    assert b.drafts.get(MEMBER) is None
    versions = b.versions(ADMIN, MEMBER)
    assert versions[0]["key"] == MEMBER and versions[0]["comment"].startswith("builder: publish")
    assert audit_actions(services) == ["add_field", "publish"]


def test_invalid_draft_is_refused_with_problems_by_pointer(services):
    b = builder_of(services)
    d = b.edit(ADMIN, MEMBER, 0, "add_field", lambda docs: edits.add_field(docs, services.field_types, "single_select", "bad", {"label": {"zh": "坏", "en": "Bad"}}))
    preview = b.preview(ADMIN, MEMBER)
    assert not preview.ok
    new_index = len(services.store.catalog().entity(MEMBER).fields)  # the added field is the last one
    assert any(p.endswith(f"/fields/{new_index}") and "options" in m for _, p, m in preview.problems)
    with pytest.raises(DefinitionError):
        b.publish(ADMIN, MEMBER, d.revision)
    assert "bad" not in columns(services)


def test_concurrent_edits_of_one_draft_conflict(services):
    b = builder_of(services)
    first = add_store_field(b)
    # A second person still holding revision 0 (or 1 after the first person's next edit) is refused.
    with pytest.raises(DraftConflict):
        b.edit(ADMIN, MEMBER, 0, "update_entity", lambda d: edits.update_entity(d, zh="会员X", en="MemberX"))
    second = b.edit(ADMIN, MEMBER, first.revision, "update_entity", lambda d: edits.update_entity(d, zh="会员X", en="MemberX"))
    with pytest.raises(DraftConflict) as info:
        b.edit(ADMIN, MEMBER, first.revision, "update_entity", lambda d: edits.update_entity(d, zh="会员Y", en="MemberY"))
    assert "revision 3" in str(info.value) or info.value.details["revision"] == second.revision
    assert b.drafts.get(MEMBER).entity["label"]["zh"] == "会员X"
    with pytest.raises(DraftConflict):
        b.publish(ADMIN, MEMBER, first.revision)


def test_deleting_a_field_with_data_needs_the_row_count(services):
    b = builder_of(services)
    services.records.create(MEMBER, {"name": "甲", "mobile": "13800000001", "joined_on": "2024-01-01", "notes": "keep me"}, SYSTEM)
    services.records.create(MEMBER, {"name": "乙", "mobile": "13800000002", "joined_on": "2024-01-01"}, SYSTEM)
    assert b.field_value_count(MEMBER, "notes") == 1
    d = b.edit(ADMIN, MEMBER, 0, "delete_field", lambda docs: edits.delete_field(docs, "notes"))
    preview = b.preview(ADMIN, MEMBER)
    assert preview.needs_confirmation and preview.risky_rows == 1
    with pytest.raises(PlanRefused):
        b.publish(ADMIN, MEMBER, d.revision)
    with pytest.raises(PlanRefused):
        b.publish(ADMIN, MEMBER, d.revision, confirm=True, confirmed_rows=0)
    assert "notes" in columns(services)
    b.publish(ADMIN, MEMBER, d.revision, confirm=True, confirmed_rows=1)
    assert "notes" not in columns(services)


def test_retiring_keeps_the_column_and_hides_the_field(services):
    b = builder_of(services)
    rid = services.records.create(MEMBER, {"name": "甲", "mobile": "13800000001", "joined_on": "2024-01-01", "notes": "kept"}, SYSTEM)
    d = b.edit(ADMIN, MEMBER, 0, "retire_field", lambda docs: edits.retire_field(docs, "notes"))
    preview = b.preview(ADMIN, MEMBER)
    assert preview.ok and not preview.needs_confirmation
    b.publish(ADMIN, MEMBER, d.revision)
    assert "notes" in columns(services)
    entity = services.store.catalog().entity(MEMBER)
    assert "notes" not in services.policy.readable_fields(SYSTEM, entity)
    assert "notes" not in services.queries.get(MEMBER, rid, SYSTEM)
    with services.engine.connect() as conn:
        from sqlalchemy import text as sql

        assert conn.execute(sql("SELECT notes FROM membership_member WHERE id = :i"), {"i": rid}).scalar() == "kept"


def test_type_change_lists_failing_ids_and_needs_confirmation(services):
    b = builder_of(services)
    good = services.records.create(MEMBER, {"name": "甲", "mobile": "13800000001", "joined_on": "2024-01-01", "address": "12"}, SYSTEM)
    bad = services.records.create(MEMBER, {"name": "乙", "mobile": "13800000002", "joined_on": "2024-01-01", "address": "Road 5"}, SYSTEM)
    d = b.edit(ADMIN, MEMBER, 0, "update_field", lambda docs: edits.update_field(docs, services.field_types, "address", {}, [], new_type="integer"))
    preview = b.preview(ADMIN, MEMBER)
    assert preview.ok
    assert preview.failing_ids == {"membership_member.address": [bad]}
    assert preview.risky_rows == 1 and good != bad
    with pytest.raises(PlanRefused):
        b.publish(ADMIN, MEMBER, d.revision)


def test_rename_is_a_rename_and_forms_follow(services):
    b = builder_of(services)
    rid = services.records.create(MEMBER, {"name": "甲", "mobile": "13800000001", "joined_on": "2024-01-01", "address": "Road 1"}, SYSTEM)
    d = b.edit(ADMIN, MEMBER, 0, "update_field", lambda docs: edits.update_field(docs, services.field_types, "address", {}, [], new_name="home_address"))
    preview = b.preview(ADMIN, MEMBER)
    assert [s.op for s in preview.plan.steps] == ["rename_column"]
    b.publish(ADMIN, MEMBER, d.revision)
    assert services.queries.get(MEMBER, rid, SYSTEM)["home_address"] == "Road 1"
    form = services.store.catalog().forms[(MEMBER, "default")]
    assert "home_address" in [ff.field for s in form.sections for ff in s.fields]


def test_versions_can_be_restored_with_their_own_plan(services):
    b = builder_of(services)
    original = [v for v in b.versions(ADMIN, MEMBER) if v["kind"] == "entity"][0]
    d = add_store_field(b)
    b.publish(ADMIN, MEMBER, d.revision)
    dry = b.restore(ADMIN, MEMBER, original["id"], dry_run=True)
    assert [s.op for s in dry.plan.steps] == ["drop_column"]
    assert dry.risky_rows == 0  # no values yet, but dropping is destructive: still confirmed
    with pytest.raises(PlanRefused):
        b.restore(ADMIN, MEMBER, original["id"])
    b.restore(ADMIN, MEMBER, original["id"], confirm=True, confirmed_rows=0)
    assert "preferred_store" not in columns(services)
    assert not services.store.catalog().entity(MEMBER).has_field("preferred_store")
    assert b.versions(ADMIN, MEMBER)[0]["comment"].startswith("builder: restore")
    assert "restore" in audit_actions(services)


def test_new_entity_gets_a_table_and_a_menu_entry(services):
    b = builder_of(services)
    d = b.create_entity(ADMIN, "membership", "supplier", "供应商", "Supplier", icon="building", menu="end")
    d = b.edit(ADMIN, "membership.supplier", d.revision, "add_field",
               lambda docs: edits.add_field(docs, services.field_types, "phone", "phone", {"label": {"zh": "电话", "en": "Phone"}}))
    b.publish(ADMIN, "membership.supplier", d.revision)
    catalog = services.store.catalog()
    assert catalog.entity("membership.supplier").field("phone").type == "phone"
    assert [m.entity for m in catalog.apps["membership"].menu][-1] == "membership.supplier"
    assert "phone" in columns(services, "membership_supplier")


def test_layout_sections_and_widths_publish_as_the_form(services):
    b = builder_of(services)
    d = add_store_field(b)
    d = b.edit(ADMIN, MEMBER, d.revision, "add_field", lambda docs: edits.add_field(docs, services.field_types, "text", "wechat_id",
                                                                                   {"label": {"zh": "微信号", "en": "WeChat ID"}}))
    d = b.edit(ADMIN, MEMBER, d.revision, "add_section",
               lambda docs: layout.add_section(docs, "preferences", "偏好", "Preferences", 2, "membership", ["preferred_store", "wechat_id"]))
    d = b.edit(ADMIN, MEMBER, d.revision, "move_form_field", lambda docs: layout.move_form_field(docs, "wechat_id", "up"))
    d = b.edit(ADMIN, MEMBER, d.revision, "set_width", lambda docs: layout.set_width(docs, "wechat_id", 2))
    b.publish(ADMIN, MEMBER, d.revision)
    form = services.store.catalog().forms[(MEMBER, "default")]
    prefs = next(s for s in form.sections if s.id == "preferences")
    assert [(ff.field, ff.span) for ff in prefs.fields] == [("wechat_id", 2), ("preferred_store", 1)]
    assert prefs.columns == 2 and prefs.tab == "membership"


def test_only_builder_roles_may_edit(services):
    b = builder_of(services)
    clerk = Actor(id=5, username="clerk", permissions=frozenset({("read", "entity:membership.member")}))
    builder = Actor(id=6, username="designer", permissions=frozenset({("builder", "entity:membership.member")}))
    with pytest.raises(PermissionDenied):
        add_store_field_as(b, clerk)
    assert not b.can_build(clerk) and b.can_build(builder) and b.can_build(builder, MEMBER)
    assert not b.can_build(builder, "membership.level")
    add_store_field_as(b, builder)
    assert b.drafts.get(MEMBER).revision == 1


def add_store_field_as(b, actor):
    return b.edit(actor, MEMBER, 0, "add_field",
                  lambda d: edits.add_field(d, b.services.field_types, "text", "wechat_id", {"label": {"zh": "微信号", "en": "WeChat ID"}}))


@pytest.mark.postgres_only
@pytest.mark.parametrize("start_draft", [False, True])
def test_simultaneous_edits_on_real_connections_one_wins(services, start_draft):
    """Two people save against the same revision at the same moment: one change lands, the other is a conflict."""
    import threading

    b = builder_of(services)
    revision = add_store_field(b).revision if start_draft else 0
    barrier = threading.Barrier(2)
    outcomes = []

    def save(label):
        def change(d):
            barrier.wait(timeout=10)  # both have read the draft; now both write
            edits.update_entity(d, zh=label, en=label)
        try:
            b.edit(ADMIN, MEMBER, revision, "update_entity", change)
            outcomes.append(("ok", label))
        except DraftConflict:
            outcomes.append(("conflict", label))

    threads = [threading.Thread(target=save, args=(name,)) for name in ("甲方", "乙方")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(kind for kind, _ in outcomes) == ["conflict", "ok"]
    winner = next(label for kind, label in outcomes if kind == "ok")
    draft = b.drafts.get(MEMBER)
    assert draft.entity["label"]["zh"] == winner and draft.revision == revision + 1
