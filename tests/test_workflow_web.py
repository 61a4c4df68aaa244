"""Workflows over HTTP: the transitions API (and its OpenAPI), the state field refused on every API write,
the record panel (buttons, dialog errors, CSRF) and the "My approvals" / "My tasks" inboxes."""
from __future__ import annotations

import pytest

from crmkit.runtime.actor import SYSTEM

from api_support import assert_error, row_count, token_client
from conftest import csrf_from, login
from org_support import PASSWORD
from workflow_support import APPLICATIONS, actor_of, applicant, history_rows, pending_tasks, staff, state_of

BASE = "/api/v1/records/membership.application"


@pytest.fixture
def api(app, api_token):
    return token_client(app, api_token)


@pytest.fixture
def team_ids(app):
    return staff(app)


def user_client(app, username):
    c = app.test_client()
    login(c, username, PASSWORD)
    return c


def jwt_client(app, username):
    resp = app.test_client().post("/api/v1/security/login", json={"username": username, "password": PASSWORD, "provider": "db"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return token_client(app, resp.get_json()["access_token"])


def test_api_lists_and_runs_transitions(app, services, api, team_ids):
    created = api.post(BASE, json=applicant())
    assert created.status_code == 201, created.get_json()
    rid = created.get_json()["id"]
    assert created.get_json()["workflow_state"] == "submitted"
    listed = api.get(f"{BASE}/{rid}/transitions").get_json()
    assert listed["state"] == "submitted"
    assert [(t["name"], t["needs_approval"]) for t in listed["data"]] == [("start_review", False), ("reject", False)]
    assert listed["data"][1]["fields"] == [{"field": "rejection_reason", "required": True}]
    moved = api.post(f"{BASE}/{rid}/transitions/start_review", json={"comment": "ok"})
    assert moved.status_code == 200 and moved.get_json()["state"] == "under_review"
    asked = api.post(f"{BASE}/{rid}/transitions/approve", json={})
    assert asked.status_code == 202 and asked.get_json()["pending_approval"]
    assert api.get(f"{BASE}/{rid}/transitions").get_json()["data"] == []  # waiting for approval
    boss = jwt_client(app, "boss1")
    [task] = boss.get("/api/v1/approvals").get_json()["data"]
    assert (task["record_id"], task["transition"], task["requested_by"]) == (rid, "approve", "admin")
    assert boss.post(f"/api/v1/approvals/{task['task']}/approve", json={"comment": "好"}).get_json() == {"status": "approved"}
    assert api.get(f"{BASE}/{rid}").get_json()["workflow_state"] == "approved"
    assert row_count(services, "membership.member") == 1


def test_api_refusals_are_clear_and_store_nothing(app, services, api, team_ids):
    rid = api.post(BASE, json=applicant()).get_json()["id"]
    clerk = jwt_client(app, "clerk")
    assert clerk.get(f"{BASE}/{rid}/transitions").get_json()["data"] == []
    assert_error(clerk.post(f"{BASE}/{rid}/transitions/start_review"), 403, "forbidden")
    body = assert_error(api.post(f"{BASE}/{rid}/transitions/reject", json={"values": {}}), 422, "validation_failed")
    assert list(body["details"]["fields"]) == ["rejection_reason"]
    assert_error(api.post(f"{BASE}/{rid}/transitions/approve"), 409, "transition_not_available")
    assert_error(api.post(f"{BASE}/{rid}/transitions/nope"), 404, "not_found")
    assert_error(api.post(f"{BASE}/{rid}/transitions/reject", json={"values": {}, "extra": 1}), 422, "validation_failed")
    assert state_of(services, APPLICATIONS, rid) == "submitted"
    assert history_rows(services, APPLICATIONS, rid) == []


@pytest.mark.parametrize("how", ["create", "patch", "bulk"])
def test_the_state_cannot_be_forged_through_the_api(services, api, how):
    rid = api.post(BASE, json=applicant()).get_json()["id"]
    before = row_count(services, APPLICATIONS)
    if how == "create":
        resp = api.post(BASE, json=applicant(mobile="13900139009", workflow_state="approved"))
    elif how == "patch":
        resp = api.patch(f"{BASE}/{rid}", json={"row_version": 1, "workflow_state": "approved"})
    else:
        resp = api.post(f"{BASE}/bulk-update", json={"ids": [rid], "values": {"workflow_state": "approved"}})
    body = assert_error(resp, 422, "validation_failed")
    assert list(body["details"]["fields"]) == ["workflow_state"]
    assert row_count(services, APPLICATIONS) == before
    assert state_of(services, APPLICATIONS, rid) == "submitted"


def test_cookie_calls_need_csrf_and_openapi_lists_the_transition_paths(services, client, csrf_token):
    rid = services.records.create(APPLICATIONS, applicant(), SYSTEM)
    assert_error(client.post(f"{BASE}/{rid}/transitions/start_review", json={}), 403, "csrf_failed")
    assert state_of(services, APPLICATIONS, rid) == "submitted"
    ok = client.post(f"{BASE}/{rid}/transitions/start_review", json={}, headers={"X-CSRFToken": csrf_token})
    assert ok.status_code == 200
    doc = client.get("/api/v1/openapi.json").get_json()
    assert "post" in doc["paths"]["/records/membership.application/{id}/transitions/{name}"]
    assert "get" in doc["paths"]["/records/membership.application/{id}/transitions"]
    assert "/records/membership.member/{id}/transitions" not in doc["paths"]
    assert "get" in doc["paths"]["/approvals"] and "post" in doc["paths"]["/approvals/{task}/{decision}"]


def test_detail_page_panel_shows_allowed_buttons_and_dialog_errors(app, services, team_ids):
    rid = services.records.create(APPLICATIONS, applicant(), SYSTEM)
    reviewer = user_client(app, "reviewer")
    detail = reviewer.get(f"/e/{APPLICATIONS}/{rid}").get_data(as_text=True)
    assert f'hx-get="/workflow/panel/{APPLICATIONS}/{rid}"' in detail
    panel = reviewer.get(f"/workflow/panel/{APPLICATIONS}/{rid}").get_data(as_text=True)
    assert 'data-transition="start_review"' in panel and 'data-transition="reject"' in panel
    assert 'data-transition="approve"' not in panel  # not from this state
    clerk_panel = user_client(app, "clerk").get(f"/workflow/panel/{APPLICATIONS}/{rid}").get_data(as_text=True)
    assert "data-transition=" not in clerk_panel
    token = csrf_from(panel)
    # Without the CSRF token: refused, nothing stored.
    assert reviewer.post(f"/workflow/panel/{APPLICATIONS}/{rid}/reject", data={"v_rejection_reason": "x"}).status_code == 400
    # Missing reason: the dialog comes back open with the field's error (htmx swap, 422).
    resp = reviewer.post(f"/workflow/panel/{APPLICATIONS}/{rid}/reject", data={"csrf_token": token, "comment": "c"}, headers={"HX-Request": "true"})
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert 'id="wf-dialog-reject">' in html.replace(" hidden>", "§")  # the reject dialog is not hidden
    assert "has-error" in html and ("此项必填" in html or "Required for" in html)
    assert state_of(services, APPLICATIONS, rid) == "submitted"
    resp = reviewer.post(f"/workflow/panel/{APPLICATIONS}/{rid}/reject", data={"csrf_token": token, "v_rejection_reason": "资料不全"},
                         headers={"HX-Request": "true"})
    assert resp.status_code == 200 and resp.headers["HX-Redirect"] == f"/e/{APPLICATIONS}/{rid}"
    assert state_of(services, APPLICATIONS, rid) == "rejected"
    panel = reviewer.get(f"/workflow/panel/{APPLICATIONS}/{rid}").get_data(as_text=True)
    assert "wf-transitioned" in panel and "data-transition=" not in panel  # a final state: history, no buttons
    assert services.queries.get(APPLICATIONS, rid, SYSTEM)["rejection_reason"] == "资料不全"


def test_my_approvals_and_my_tasks_inboxes(app, services, team_ids):
    rid = services.records.create(APPLICATIONS, applicant(), SYSTEM)
    reviewer = user_client(app, "reviewer")
    tasks_page = reviewer.get("/workflow/tasks").get_data(as_text=True)
    assert f"/e/{APPLICATIONS}/{rid}" in tasks_page and "李娜" in tasks_page
    token = csrf_from(tasks_page)
    reviewer.post(f"/workflow/panel/{APPLICATIONS}/{rid}/start_review", data={"csrf_token": token})
    reviewer.post(f"/workflow/panel/{APPLICATIONS}/{rid}/approve", data={"csrf_token": token, "comment": "请批准"})
    [task] = [t for t in pending_tasks(services, 1) if t["assignee_id"] == team_ids["boss1"]]
    boss = user_client(app, "boss1")
    page = boss.get("/workflow/approvals").get_data(as_text=True)
    assert "李娜" in page and "请批准" in page and f'/workflow/approvals/{task["id"]}/decide' in page
    assert 'class="count-pill" style="margin-left:auto">1</span>' in page  # the nav count
    token = csrf_from(page)
    # Reject without a comment: refused with a message, nothing changes.
    resp = boss.post(f"/workflow/approvals/{task['id']}/decide", data={"csrf_token": token, "decision": "reject"}, follow_redirects=True)
    assert "原因" in resp.get_data(as_text=True) or "Say why" in resp.get_data(as_text=True)
    assert state_of(services, APPLICATIONS, rid) == "under_review"
    resp = boss.post(f"/workflow/approvals/{task['id']}/decide", data={"csrf_token": token, "decision": "approve"})
    assert resp.status_code == 303
    assert state_of(services, APPLICATIONS, rid) == "approved"
    assert row_count(services, "membership.member") == 1
    after = boss.get("/workflow/approvals").get_data(as_text=True)
    assert f'/workflow/approvals/{task["id"]}/decide' not in after


def test_delegation_form_on_my_approvals(app, services, team_ids):
    boss = user_client(app, "boss1")
    token = csrf_from(boss.get("/workflow/approvals").get_data(as_text=True))
    bad = boss.post("/workflow/delegations", data={"csrf_token": token, "delegate_id": team_ids["boss2"], "starts_at": "2030-01-02T09:00",
                                                   "ends_at": "2030-01-01T09:00"}, follow_redirects=True)
    assert "结束时间必须晚于开始时间" in bad.get_data(as_text=True) or "must end after" in bad.get_data(as_text=True)
    boss.post("/workflow/delegations", data={"csrf_token": token, "delegate_id": team_ids["boss2"], "starts_at": "2030-01-01T09:00",
                                             "ends_at": "2030-01-05T18:00", "note": "出差"})
    [d] = services.workflows.delegations(actor_of(services, team_ids["boss1"], "boss1"))
    assert (d["user_id"], d["delegate_id"]) == (team_ids["boss1"], team_ids["boss2"])


def test_a_fetched_application_sent_back_unchanged_is_accepted_but_a_changed_state_is_not(services, api):
    rid = api.post(BASE, json=applicant()).get_json()["id"]
    fetched = api.get(f"{BASE}/{rid}").get_json()
    assert fetched["workflow_state"] == "submitted"
    ok = api.patch(f"{BASE}/{rid}", json={**{k: v for k, v in fetched.items() if k not in ("rejection_reason", "reviewed_at")}, "notes": "round trip"})
    assert ok.status_code == 200, ok.get_json()
    assert state_of(services, APPLICATIONS, rid) == "submitted"
    body = assert_error(api.patch(f"{BASE}/{rid}", json={"row_version": ok.get_json()["row_version"], "workflow_state": "under_review"}),
                        422, "validation_failed")
    assert list(body["details"]["fields"]) == ["workflow_state"]


def test_org_managers_page_sets_the_managers_approvals_go_to(app, services, client, team_ids):
    from crmkit.runtime.workflow.people import managers_of
    from org_support import build_tree, org

    units = build_tree(org(app))
    org(app).assign_user(SYSTEM, team_ids["clerk"], org_unit_id=units["sh_sales"], role_ids=[])
    page = client.get("/workflow/managers").get_data(as_text=True)
    assert "上海公司" in page and "上海销售部" in page
    token = csrf_from(page)
    resp = client.post("/workflow/managers", data={"csrf_token": token, "unit_id": units["sh"], "managers": [team_ids["boss1"]]})
    assert resp.status_code == 303
    with services.engine.connect() as conn:
        assert managers_of(conn, team_ids["clerk"]) == [team_ids["boss1"]]
    bad = client.post("/workflow/managers", data={"csrf_token": token, "unit_id": units["sh"], "managers": ["999999"]}, follow_redirects=True)
    assert "请选择已存在的用户" in bad.get_data(as_text=True) or "Choose existing users" in bad.get_data(as_text=True)
    with services.engine.connect() as conn:
        assert managers_of(conn, team_ids["clerk"]) == [team_ids["boss1"]]
    reviewer = user_client(app, "reviewer")
    assert reviewer.get("/workflow/managers").status_code == 403
    assert reviewer.post("/workflow/managers", data={"csrf_token": csrf_from(reviewer.get("/workflow/tasks").get_data(as_text=True)),
                                                     "unit_id": units["sh"], "managers": []}).status_code == 403


def test_panel_and_inboxes_speak_english_too(app, services, client, team_ids):
    rid = services.records.create(APPLICATIONS, applicant(), SYSTEM)
    client.get("/locale/en")
    panel = client.get(f"/workflow/panel/{APPLICATIONS}/{rid}").get_data(as_text=True)
    assert "Join review" in panel and "Start review" in panel and "Submitted" in panel and "Workflow history" in panel
    assert "开始审核" not in panel
    page = client.get("/workflow/approvals").get_data(as_text=True)
    assert "My approvals" in page and "Delegation while away" in page and "我的审批" not in page
    resp = client.post(f"{BASE}/{rid}/transitions/reject", json={}, headers={"X-CSRFToken": csrf_from(page), "Accept-Language": "zh-CN"})
    assert "执行“驳回”时此项必填" in resp.get_json()["details"]["fields"]["rejection_reason"][0]
