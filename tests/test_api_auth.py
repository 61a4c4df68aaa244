"""REST API authentication: JWT bearer tokens, or the session cookie plus a CSRF header; permissions via the policy."""
from __future__ import annotations

import datetime as dt

import pytest

from api_support import LEVELS, MEMBERS, assert_error, member, row_count, stored, token_client


@pytest.fixture
def api(app, api_token):
    """A client authenticated as the admin user with a JWT."""
    return token_client(app, api_token)

VIEWER, VIEWER_PASSWORD = "viewer", "viewer-pass-1"


def jwt_for(app, username, password, **extra):
    resp = app.test_client().post("/api/v1/security/login", json={"username": username, "password": password, "provider": "db", **extra})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


@pytest.fixture
def viewer_token(app):
    """A user whose only permission is reading members."""
    with app.app_context():
        sm = app.appbuilder.sm
        role = sm.add_role("Member viewer")
        sm.add_permission_role(role, sm.find_permission_view_menu("read", "entity:membership.member"))
        sm.add_user(VIEWER, "Vera", "Viewer", "viewer@example.com", role, VIEWER_PASSWORD)
        app.extensions["sqlalchemy"].session.remove()
    return jwt_for(app, VIEWER, VIEWER_PASSWORD)["access_token"]


def test_requests_without_credentials_get_401_json(app, services):
    c = app.test_client()
    for method, url in [("get", MEMBERS), ("post", MEMBERS), ("get", f"{MEMBERS}/1"), ("delete", f"{MEMBERS}/1"), ("get", "/api/v1/openapi.json")]:
        resp = getattr(c, method)(url, json=member()) if method == "post" else getattr(c, method)(url)
        body = assert_error(resp, 401, "unauthorized")
        assert "/api/v1/security/login" in body["message"]
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert row_count(services, "membership.member") == 0


def test_bad_tokens_get_401(app, api_token):
    with app.app_context():
        from flask_jwt_extended import create_access_token

        expired = create_access_token(identity="1", expires_delta=dt.timedelta(seconds=-10))
    refresh = jwt_for(app, "admin", "admin-pass-1", refresh=True)["refresh_token"]
    for header in ["Bearer not.a.token", f"Bearer {api_token}x", f"Bearer {expired}", f"Bearer {refresh}", "Basic YWRtaW46eA==", api_token]:
        c = app.test_client()
        assert_error(c.get(MEMBERS, headers={"Authorization": header}), 401, "unauthorized")


def test_jwt_works_without_csrf(api, services):
    assert api.get(MEMBERS).status_code == 200
    resp = api.post(MEMBERS, json=member())
    assert resp.status_code == 201
    assert stored(services, "membership.member", resp.get_json()["id"])["name"] == "张伟"


def test_a_bad_token_never_falls_back_to_the_session_cookie(client):
    assert client.get(MEMBERS).status_code == 200
    assert_error(client.get(MEMBERS, headers={"Authorization": "Bearer nonsense"}), 401, "unauthorized")


def test_session_cookie_reads_without_csrf(client):
    resp = client.get(MEMBERS)
    assert resp.status_code == 200 and resp.get_json()["items"] == []


def test_session_cookie_writes_need_the_csrf_header(client, csrf_token, services):
    body = assert_error(client.post(MEMBERS, json=member()), 403, "csrf_failed")
    assert "X-CSRFToken" in body["message"]
    assert_error(client.post(MEMBERS, json=member(), headers={"X-CSRFToken": "forged"}), 403, "csrf_failed")
    assert row_count(services, "membership.member") == 0

    resp = client.post(MEMBERS, json=member(), headers={"X-CSRFToken": csrf_token})
    assert resp.status_code == 201
    rid = resp.get_json()["id"]
    assert_error(client.patch(f"{MEMBERS}/{rid}", json={"row_version": 1, "name": "李娜"}), 403, "csrf_failed")
    assert_error(client.delete(f"{MEMBERS}/{rid}"), 403, "csrf_failed")
    assert client.get(f"{MEMBERS}/{rid}").get_json()["name"] == "张伟"
    assert client.patch(f"{MEMBERS}/{rid}", json={"row_version": 1, "name": "李娜"}, headers={"X-CSRFToken": csrf_token}).status_code == 200
    assert client.get(f"{MEMBERS}/{rid}").get_json()["name"] == "李娜"


def test_csrf_token_of_another_session_is_refused(app, client, services):
    from conftest import csrf_from, login

    other = app.test_client()
    login(other)
    foreign = csrf_from(other.get("/home").get_data(as_text=True))
    assert_error(client.post(MEMBERS, json=member(), headers={"X-CSRFToken": foreign}), 403, "csrf_failed")
    assert row_count(services, "membership.member") == 0


def test_permissions_come_from_the_policy(app, api, viewer_token, services):
    created = api.post(MEMBERS, json=member()).get_json()
    viewer = token_client(app, viewer_token)
    items = viewer.get(MEMBERS).get_json()["items"]
    assert [r["name"] for r in items] == ["张伟"]
    assert viewer.get(f"{MEMBERS}/{created['id']}").get_json()["mobile"] == "13800138000"
    body = assert_error(viewer.post(MEMBERS, json=member(mobile="13900000000")), 403, "forbidden")
    assert "entity:membership.member" in body["message"]
    assert_error(viewer.patch(f"{MEMBERS}/{created['id']}", json={"row_version": 1, "name": "x"}), 403, "forbidden")
    assert_error(viewer.delete(f"{MEMBERS}/{created['id']}"), 403, "forbidden")
    assert_error(viewer.post(f"{MEMBERS}/bulk-delete", json={"ids": [created["id"]]}), 403, "forbidden")
    assert_error(viewer.get(LEVELS), 403, "forbidden")
    assert row_count(services, "membership.member", include_deleted=False) == 1
    spec = viewer.get("/api/v1/openapi.json").get_json()
    assert "/records/membership.member" in spec["paths"] and "/records/membership.level" not in spec["paths"]
