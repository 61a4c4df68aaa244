"""Configuration export → import round trip (files and CLI), and three-way template upgrades."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from builder_support import ADMIN, builder_of
from crmkit.builder import edits
from crmkit.builder.config_io import export_folder, import_documents, read_folder
from crmkit.builder.upgrade import UnresolvedConflicts, apply_upgrade, plan_upgrade
from crmkit.runtime.packages import get_package
from crmkit.runtime.storage import platform_tables as pt

MEMBER = "membership.member"


def definitions(services) -> dict:
    with services.engine.connect() as conn:
        return {(r.kind, r.key): r.body for r in conn.execute(select(pt.document.c.kind, pt.document.c.key, pt.document.c.body))}


def test_export_writes_sorted_pretty_json_one_file_per_definition(services, tmp_path):
    files = export_folder(services, tmp_path / "cfg")
    assert "membership/app.json" in files and "membership/entities/member.json" in files
    assert "membership/forms/member.default.json" in files and "membership/views/member.default.json" in files
    text = (tmp_path / "cfg/membership/entities/member.json").read_text("utf-8")
    body = json.loads(text)
    assert text == json.dumps(body, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    assert "会员" in text  # UTF-8, not \u escapes
    # Stable: a second export writes the same bytes.
    export_folder(services, tmp_path / "again")
    assert (tmp_path / "again/membership/entities/member.json").read_text("utf-8") == text


def test_round_trip_yields_identical_definitions(services, tmp_path):
    before = definitions(services)
    export_folder(services, tmp_path / "cfg")
    result = import_documents(services, read_folder(tmp_path / "cfg"))
    assert result.changed == [] and result.plan.empty
    assert definitions(services) == before


def test_cli_export_edit_import_with_lossy_confirmation(app, services, tmp_path, monkeypatch):
    from crmkit.runtime.actor import SYSTEM
    from crmkit.runtime.cli import main

    services.records.create(MEMBER, {"name": "甲", "mobile": "13800000001", "joined_on": "2024-01-01", "notes": "n"}, SYSTEM)
    monkeypatch.setenv("CRMKIT_DATABASE_URL", services.settings.database_url)
    monkeypatch.setenv("CRMKIT_VAR_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    out = runner.invoke(main, ["config", "export", str(tmp_path / "cfg")])
    assert out.exit_code == 0, out.output
    path = tmp_path / "cfg/membership/entities/member.json"
    body = json.loads(path.read_text("utf-8"))
    body["fields"] = [f for f in body["fields"] if f["name"] != "notes"]
    path.write_text(json.dumps(body, ensure_ascii=False, indent=2, sort_keys=True) + "\n", "utf-8")
    form_path = tmp_path / "cfg/membership/forms/member.default.json"
    form = json.loads(form_path.read_text("utf-8"))
    for s in form["sections"]:
        s["fields"] = [f for f in s["fields"] if (f if isinstance(f, str) else f["field"]) != "notes"]
    form_path.write_text(json.dumps(form, ensure_ascii=False, indent=2, sort_keys=True) + "\n", "utf-8")
    refused = runner.invoke(main, ["config", "import", str(tmp_path / "cfg")])
    assert refused.exit_code == 2 and "Drop column" in refused.output
    assert services.store.catalog().entity(MEMBER).has_field("notes")
    done = runner.invoke(main, ["config", "import", str(tmp_path / "cfg"), "--yes"])
    assert done.exit_code == 0, done.output
    assert not services.store.catalog().entity(MEMBER).has_field("notes")


def test_import_of_invalid_definitions_stores_nothing(services, tmp_path):
    from crmkit.runtime.errors import DefinitionError

    before = definitions(services)
    export_folder(services, tmp_path / "cfg")
    path = tmp_path / "cfg/membership/entities/member.json"
    body = json.loads(path.read_text("utf-8"))
    body["title_field"] = "nope"
    path.write_text(json.dumps(body), "utf-8")
    with pytest.raises(DefinitionError) as info:
        import_documents(services, read_folder(tmp_path / "cfg"))
    assert any(p == "/title_field" for _, p, _ in info.value.problems)
    assert definitions(services) == before


# --- template upgrades ----------------------------------------------------------------------------

def new_template(tmp_path: Path, change) -> Path:
    """A copy of the packaged membership template at version 0.2.0, changed by ``change(entity_body)``."""
    folder = tmp_path / "membership"
    shutil.copytree(get_package("membership").path, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    app = json.loads((folder / "app.json").read_text("utf-8"))
    app["version"] = "0.3.0"
    (folder / "app.json").write_text(json.dumps(app, ensure_ascii=False), "utf-8")
    entity = json.loads((folder / "entities/member.json").read_text("utf-8"))
    change(entity)
    (folder / "entities/member.json").write_text(json.dumps(entity, ensure_ascii=False), "utf-8")
    return folder


def customise(services, change):
    b = builder_of(services)
    d = b.edit(ADMIN, MEMBER, 0, "custom", change)
    b.publish(ADMIN, MEMBER, d.revision)


def test_upgrade_without_conflicts_keeps_local_changes_and_takes_template_changes(services, tmp_path):
    customise(services, lambda d: (edits.add_field(d, services.field_types, "text", "wechat_id", {"label": {"zh": "微信号", "en": "WeChat ID"}}),
                                   edits.update_entity(d, zh="会员", en="Club member")))

    def template_change(e):
        e["fields"].append({"id": "fld_member_referrer", "name": "referrer", "type": "text", "label": {"zh": "推荐人", "en": "Referrer"}})
        next(f for f in e["fields"] if f["name"] == "email")["label"] = {"zh": "电子邮箱", "en": "E-mail"}

    folder = new_template(tmp_path, template_change)
    plan = plan_upgrade(services, "membership", folder)
    assert plan.conflicts == [] and f"entity:{MEMBER}" in plan.local_changes and plan.from_version == "0.2.0"
    apply_upgrade(services, "membership", folder)
    entity = services.store.catalog().entity(MEMBER)
    assert entity.has_field("wechat_id") and entity.has_field("referrer")  # both sides' fields
    assert entity.label.en == "Club member"  # the local change stays
    assert entity.field("email").label.zh == "电子邮箱"  # the template's change arrives
    with services.engine.connect() as conn:
        assert conn.execute(select(pt.installed_app.c.version).where(pt.installed_app.c.id == "membership")).scalar() == "0.3.0"
        base = conn.execute(select(pt.template_base.c.app_version).where(pt.template_base.c.key == MEMBER)).scalar()
    assert base == "0.3.0"


def test_upgrade_with_a_conflict_lists_it_and_applies_the_decision(services, tmp_path):
    customise(services, lambda d: edits.update_entity(d, zh="客户", en="Customer"))
    folder = new_template(tmp_path, lambda e: e.update(label={"zh": "会员档案", "en": "Member profile"}))
    plan = plan_upgrade(services, "membership", folder)
    by_path = {c.path: c for c in plan.conflicts}
    assert sorted(by_path) == ["/label/en", "/label/zh"] and {c.document for c in plan.conflicts} == {f"entity:{MEMBER}"}
    c = by_path["/label/zh"]
    assert (c.base, c.local, c.theirs) == ("会员", "客户", "会员档案")
    with pytest.raises(UnresolvedConflicts) as info:
        apply_upgrade(services, "membership", folder)
    assert len(info.value.details["conflicts"]) == 2
    assert services.store.catalog().entity(MEMBER).label.zh == "客户"  # nothing applied
    decisions = {by_path["/label/zh"].id: "local", by_path["/label/en"].id: "theirs"}
    apply_upgrade(services, "membership", folder, decisions=decisions)
    label = services.store.catalog().entity(MEMBER).label
    assert (label.zh, label.en) == ("客户", "Member profile")


def test_upgrade_cli_lists_conflicts_and_takes_a_side(app, services, tmp_path, monkeypatch):
    from crmkit.runtime.cli import main

    customise(services, lambda d: edits.update_entity(d, zh="客户", en="Customer"))
    folder = new_template(tmp_path, lambda e: e.update(label={"zh": "会员档案", "en": "Member profile"}))
    monkeypatch.setenv("CRMKIT_DATABASE_URL", services.settings.database_url)
    monkeypatch.setenv("CRMKIT_VAR_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    listed = runner.invoke(main, ["template", "upgrade", "membership", "--from", str(folder)])
    assert listed.exit_code == 3 and "/label/zh" in listed.output and "客户" in listed.output
    done = runner.invoke(main, ["template", "upgrade", "membership", "--from", str(folder), "--take", "theirs"])
    assert done.exit_code == 0, done.output
    assert services.store.catalog().entity(MEMBER).label.zh == "会员档案"


def test_upgrade_page_shows_conflicts_and_applies_decisions(client, services, tmp_path, monkeypatch):
    from conftest import csrf_from

    customise(services, lambda d: edits.update_entity(d, zh="客户", en="Customer"))
    folder = new_template(tmp_path, lambda e: e.update(label={"zh": "会员档案", "en": "Member profile"}))
    from crmkit.runtime import packages

    real = packages.discover

    def discover():
        found = real()
        found["membership"] = type(found["membership"])(**{**found["membership"].__dict__, "path": folder})
        return found

    monkeypatch.setattr(packages, "discover", discover)
    page = client.get("/builder/upgrades?app=membership").get_data(as_text=True)
    assert "0.2.0 → 0.3.0" in page and "/label/zh" in page
    ids = sorted(set(__import__("re").findall(r'name="c:([^"]+)"', page)))
    token = csrf_from(page)
    refused = client.post("/builder/upgrades", data={"csrf_token": token, "app": "membership"})
    assert refused.status_code == 409
    resp = client.post("/builder/upgrades", data={"csrf_token": token, "app": "membership", **{f"c:{i}": "theirs" for i in ids}})
    assert resp.status_code == 303
    assert services.store.catalog().entity(MEMBER).label.en == "Member profile"
