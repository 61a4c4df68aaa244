"""Sessions: lifetime, idle timeout, invalidation on password change, deactivation and "sign out everywhere"."""
from __future__ import annotations

import time

from sqlalchemy import update

from auth_support import STAFF_PASSWORD, add_user, api_login, logged_in, make_auth_app, post_login, user_row  # noqa: F401
from conftest import ADMIN_USER, csrf_from, login

from crmkit.runtime.auth.sessions import SESSION_KEY


def backdate(client, **seconds_ago):
    with client.session_transaction() as s:
        stamp = dict(s[SESSION_KEY])
        for key, ago in seconds_ago.items():
            stamp[key] = time.time() - ago
        s[SESSION_KEY] = stamp


def test_login_stamps_the_session_and_marks_it_permanent(client):
    with client.session_transaction() as s:
        stamp = s[SESSION_KEY]
        assert s.permanent is True
    assert set(stamp) == {"uid", "fp", "at", "seen"}
    assert abs(stamp["at"] - time.time()) < 60
    assert len(stamp["fp"]) == 32 and user_row(client.application, ADMIN_USER)["password"] not in stamp["fp"]


def test_idle_timeout_logs_out_with_a_message(make_auth_app):
    app = make_auth_app(session_idle_seconds=600)
    c = app.test_client()
    login(c)
    backdate(c, seen=599)
    assert logged_in(c)
    backdate(c, seen=601)
    resp = c.get("/e/membership.member")
    assert resp.status_code == 302 and "/login/" in resp.headers["Location"] and "next=" in resp.headers["Location"]
    page = c.get(resp.headers["Location"]).get_data(as_text=True)
    assert "inactivity" in page or "长时间未操作" in page
    assert not logged_in(c)


def test_activity_keeps_the_session_alive(make_auth_app):
    app = make_auth_app(session_idle_seconds=600)
    c = app.test_client()
    login(c)
    backdate(c, seen=500, at=500)
    assert logged_in(c)  # touches "seen" (older than a minute)
    with c.session_transaction() as s:
        assert time.time() - s[SESSION_KEY]["seen"] < 60
    backdate(c, at=500)
    assert logged_in(c)


def test_absolute_lifetime_ends_even_an_active_session(make_auth_app):
    app = make_auth_app(session_lifetime_seconds=3600, session_idle_seconds=600)
    c = app.test_client()
    login(c)
    backdate(c, at=3601, seen=1)
    resp = c.get("/home")
    assert resp.status_code == 302
    page = c.get(resp.headers["Location"]).get_data(as_text=True)
    assert "session has ended" in page or "会话已结束" in page
    assert not logged_in(c)


def test_ended_session_on_htmx_and_api_requests(make_auth_app):
    app = make_auth_app(session_idle_seconds=600)
    c = app.test_client()
    login(c)
    backdate(c, seen=700)
    resp = c.get("/e/membership.member", headers={"HX-Request": "true"})
    assert resp.status_code == 200 and "/login/" in resp.headers["HX-Redirect"]
    login(c)
    backdate(c, seen=700)
    resp = c.get("/api/v1/records/membership.member")
    assert resp.status_code == 401
    assert resp.get_json()["code"] == "session_ended"


def test_a_forged_or_missing_stamp_is_refused(client):
    with client.session_transaction() as s:
        s[SESSION_KEY] = {**s[SESSION_KEY], "fp": "0" * 32}
    assert not logged_in(client)
    login(client)
    with client.session_transaction() as s:
        del s[SESSION_KEY]
    assert not logged_in(client)


def test_password_change_ends_other_sessions_but_not_the_changing_one(make_auth_app):
    app = make_auth_app()
    add_user(app, "clerk")
    laptop, phone = app.test_client(), app.test_client()
    login(laptop, "clerk", STAFF_PASSWORD)
    login(phone, "clerk", STAFF_PASSWORD)
    before = user_row(app, "clerk")["password"]
    form = laptop.get("/resetmypassword/form").get_data(as_text=True)
    resp = laptop.post("/resetmypassword/form", data={"password": "new-secret-phrase", "conf_password": "new-secret-phrase",
                                                       "csrf_token": csrf_from(form)})
    assert resp.status_code == 302
    assert user_row(app, "clerk")["password"] != before
    assert logged_in(laptop)
    assert not logged_in(phone)
    assert post_login(phone, "clerk", "new-secret-phrase").status_code == 302 and logged_in(phone)


def test_admin_password_reset_ends_the_users_sessions_and_tokens(make_auth_app):
    app = make_auth_app()
    uid = add_user(app, "clerk")
    c = app.test_client()
    login(c, "clerk", STAFF_PASSWORD)
    token = api_login(app.test_client(), "clerk", STAFF_PASSWORD).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get("/api/v1/records/membership.member", headers=headers).status_code == 200
    admin = app.test_client()
    login(admin)
    form = admin.get(f"/resetpassword/form?pk={uid}").get_data(as_text=True)
    resp = admin.post(f"/resetpassword/form?pk={uid}", data={"password": "admin-chosen-99", "conf_password": "admin-chosen-99",
                                                              "csrf_token": csrf_from(form)})
    assert resp.status_code == 302
    assert not logged_in(c)
    denied = app.test_client().get("/api/v1/records/membership.member", headers=headers)
    assert denied.status_code == 401 and "access token was not accepted" in denied.get_json()["message"]
    assert logged_in(admin)


def test_deactivation_ends_sessions_and_tokens(make_auth_app):
    app = make_auth_app()
    uid = add_user(app, "clerk")
    c = app.test_client()
    login(c, "clerk", STAFF_PASSWORD)
    token = api_login(app.test_client(), "clerk", STAFF_PASSWORD).get_json()["access_token"]
    with app.app_context():
        sm = app.appbuilder.sm
        sm.session.execute(update(sm.user_model).where(sm.user_model.id == uid).values(active=False))
        sm.session.commit()
    assert not logged_in(c)
    resp = app.test_client().get("/api/v1/records/membership.member", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401
    assert post_login(app.test_client(), "clerk", STAFF_PASSWORD).headers["Location"].startswith("/login/")


def test_sign_out_everywhere(make_auth_app):
    app = make_auth_app()
    add_user(app, "clerk")
    here, elsewhere = app.test_client(), app.test_client()
    login(here, "clerk", STAFF_PASSWORD)
    login(elsewhere, "clerk", STAFF_PASSWORD)
    token = api_login(app.test_client(), "clerk", STAFF_PASSWORD).get_json()["access_token"]
    page = here.get("/account/api-keys").get_data(as_text=True)
    # CSRF is required
    assert here.post("/account/sign-out-everywhere").status_code == 400
    assert logged_in(elsewhere)
    resp = here.post("/account/sign-out-everywhere", data={"csrf_token": csrf_from(page)})
    assert resp.status_code == 303
    msg = here.get(resp.headers["Location"]).get_data(as_text=True)
    assert "other sessions" in msg or "会话和访问令牌已全部失效" in msg
    assert logged_in(here)
    assert not logged_in(elsewhere)
    assert app.test_client().get("/api/v1/records/membership.member", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_refresh_tokens_end_with_the_password_too(make_auth_app):
    app = make_auth_app()
    uid = add_user(app, "clerk")
    tokens = app.test_client().post("/api/v1/security/login", json={"username": "clerk", "password": STAFF_PASSWORD,
                                                                     "provider": "db", "refresh": True}).get_json()
    refresh = {"Authorization": f"Bearer {tokens['refresh_token']}"}
    fresh = app.test_client().post("/api/v1/security/refresh", headers=refresh)
    assert fresh.status_code == 200 and fresh.get_json()["access_token"]
    with app.test_request_context():
        app.appbuilder.sm.reset_password(uid, "another-long-phrase")
    assert app.test_client().post("/api/v1/security/refresh", headers=refresh).status_code == 401
    new_access = {"Authorization": f"Bearer {fresh.get_json()['access_token']}"}
    assert app.test_client().get("/api/v1/records/membership.member", headers=new_access).status_code == 401
