"""The workflow designer: builder permission, the SVG diagram, saving a valid workflow through the metadata
store (versioned, audited, effective at once) and refusing an invalid one with positioned errors."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.errors import DefinitionError
from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.storage import platform_tables as pt
from crmkit.runtime.workflow.diagram import Edge, Node, layers

from conftest import csrf_from
from workflow_support import add_user
from test_workflow_web import user_client

URL = "/builder/workflows/membership.level"


def level_form(token: str, **over) -> dict:
    data = {"csrf_token": token, "wf_name": "release", "wf_zh": "等级发布", "wf_en": "Level release",
            "s-0-name": "draft", "s-0-zh": "草稿", "s-0-en": "Draft", "s-0-color": "#3b82f6",
            "s-1-name": "active", "s-1-zh": "启用", "s-1-en": "Active", "s-1-color": "#10b981", "s-1-final": "1",
            "s-2-name": "", "initial": "0",
            "t-0-name": "activate", "t-0-zh": "启用", "t-0-en": "Activate", "t-0-from": "draft", "t-0-to": "active",
            "t-0-roles": "Admin", "t-0-guard": "level_value > 0", "t-0-fields": "benefits!", "t-0-extra": "",
            "t-1-name": ""}
    data.update(over)
    return data


def test_layers_go_left_to_right_from_the_initial_state():
    nodes = [Node("a", "A", "", True, False), Node("b", "B", "", False, False), Node("c", "C", "", False, True), Node("z", "Z", "", False, False)]
    edges = [Edge("a", "b", "go"), Edge("b", "c", "end"), Edge("b", "a", "back")]
    assert layers(nodes, edges) == {"a": 0, "b": 1, "c": 2, "z": 3}


def test_designer_needs_the_builder_permission(app, client):
    add_user(app, "nobody", [])
    assert user_client(app, "nobody").get(URL).status_code == 403
    page = client.get("/builder/workflows/")
    assert page.status_code == 200 and "membership.application" in page.get_data(as_text=True)


def test_designer_shows_the_diagram_of_the_join_workflow(client):
    html = client.get("/builder/workflows/membership.application").get_data(as_text=True)
    assert "<svg" in html and 'data-state="submitted"' in html and 'data-state="rejected"' in html
    assert "marker-end" in html and 'name="t-1-extra"' in html and "Membership Manager" in html


def test_designer_saves_a_valid_workflow(app, client, services):
    token = csrf_from(client.get(URL).get_data(as_text=True))
    preview = client.post(f"{URL}/preview", data=level_form(token))
    assert preview.status_code == 200 and 'data-state="active"' in preview.get_data(as_text=True)
    resp = client.post(URL, data=level_form(token, comment="first version"))
    assert resp.status_code == 303, resp.get_data(as_text=True)[:800]
    wf = services.store.catalog().workflow_of("membership.level")
    assert [s.name for s in wf.states] == ["draft", "active"] and wf.initial.name == "draft"
    [t] = wf.transitions
    assert (t.sources, t.target, t.allowed.roles, t.guard, t.fields[0].field, t.fields[0].required) == (
        ("draft",), "active", ("Admin",), "level_value > 0", "benefits", True)
    with services.engine.connect() as conn:
        versions = conn.execute(select(pt.document_version.c.comment).join(pt.document, pt.document.c.id == pt.document_version.c.document_id)
                                .where(pt.document.c.kind == "workflow", pt.document.c.key == "membership.level:release")).scalars().all()
        audited = conn.execute(select(pt.audit.c.subject).where(pt.audit.c.category == "publish", pt.audit.c.subject == "workflow:membership.level:release")).all()
    assert versions == ["first version"] and len(audited) == 1
    # Effective at once: a new level starts in the initial state.
    rid = services.records.create("membership.level", {"name": "钻石", "code": "DIAMOND", "level_value": 50}, SYSTEM)
    assert services.queries.get("membership.level", rid, SYSTEM)["workflow_state"] == "draft"


def test_designer_refuses_an_invalid_workflow_with_positioned_errors(client, services):
    token = csrf_from(client.get(URL).get_data(as_text=True))
    bad = level_form(token, **{"t-0-to": "nowhere", "t-0-guard": "level_value >", "t-0-fields": "no_such_field"})
    resp = client.post(URL, data=bad)
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "<code>/transitions/0/to</code>" in html and "&#39;nowhere&#39; is not a state" in html
    assert "<code>/transitions/0/guard</code>" in html and "at character" in html
    assert "<code>/transitions/0/fields/0/field</code>" in html
    assert 'class="has-problem"' in html and 'value="nowhere"' in html  # the form keeps what was typed
    bad_json = client.post(URL, data=level_form(token, **{"t-0-extra": "{approval"}))
    assert bad_json.status_code == 422 and "<code>/transitions/0/extra</code>" in bad_json.get_data(as_text=True)
    no_initial = client.post(URL, data=level_form(token, initial=""))
    assert no_initial.status_code == 422 and "exactly one state" in no_initial.get_data(as_text=True)
    assert services.store.catalog().workflow_of("membership.level") is None


def _problems_of(services, body) -> dict[str, str]:
    with pytest.raises(DefinitionError) as exc:
        services.store.preview([RawDocument("workflow", "membership", body, "membership/workflows/level.json")])
    assert all(f == "membership/workflows/level.json" for f, _, _ in exc.value.problems)
    return {p: m for _, p, m in exc.value.problems}


def test_definition_errors_name_the_file_and_pointer(services):
    base = {"entity": "membership.level", "name": "w", "label": {"zh": "流程", "en": "Flow"},
            "states": [{"name": "a", "label": {"zh": "甲", "en": "A"}, "initial": True}, {"name": "b", "label": {"zh": "乙", "en": "B"}, "final": True}],
            "transitions": [{"name": "go", "label": {"zh": "走", "en": "Go"}, "from": "a", "to": "b"}]}
    schema = _problems_of(services, {**base, "transitions": [{"name": "go", "label": {"zh": "走", "en": "Go"}, "from": "a", "to": "b",
                                                              "approval": {"steps": [{"boss": True}]}}]})
    assert any(p.startswith("/transitions/0/approval/steps/0") for p in schema)
    checks = _problems_of(services, {**base, "states": base["states"] + [{"name": "a", "label": {"zh": "丙", "en": "C"}, "initial": True}],
                                     "transitions": [{"name": "go", "label": {"zh": "走", "en": "Go"}, "from": ["a", "b"], "to": "c",
                                                      "actions": [{"set": {"nope": 1, "level_value": "many"}}], "guard": "name +"}]})
    assert "/states/2/name" in checks and "exactly one state" in checks["/states"]
    assert "final state" in checks["/transitions/0/from"] and "not a state" in checks["/transitions/0/to"]
    assert "/transitions/0/actions/0/set/nope" in checks and "/transitions/0/actions/0/set/level_value" in checks
    assert "at character" in checks["/transitions/0/guard"]
    twice = _problems_of(services, {**base, "entity": "membership.application"})
    assert "already has a workflow" in twice["/entity"]
