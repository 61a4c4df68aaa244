"""Login hardening: rate limits on the form and API login, account lockout, public registration off."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select, update

from auth_support import STAFF_PASSWORD, add_user, api_login, logged_in, make_auth_app, post_login, user_row  # noqa: F401
from conftest import ADMIN_PASSWORD, ADMIN_USER, login

from crmkit.runtime.auth.tables import user_auth


def test_many_successful_logins_are_never_rate_limited(make_auth_app):
    """The suite (and real people) log in often: only failures use up the login limit."""
    app = make_auth_app(login_rate_limit="3 per minute")
    for _ in range(6):
        c = app.test_client()
        resp = post_login(c)
        assert resp.status_code == 302 and "/login" not in resp.headers["Location"]
        assert logged_in(c)
    for _ in range(5):
        assert api_login(app.test_client()).status_code == 200


def test_failed_form_logins_are_rate_limited_then_even_the_right_password_waits(make_auth_app):
    app = make_auth_app(login_rate_limit="3 per minute", login_lockout_threshold=100)
    c = app.test_client()
    for _ in range(3):
        resp = post_login(c, password="wrong-password-x")
        assert resp.status_code == 302 and "/login/" in resp.headers["Location"]
    blocked = post_login(c)  # correct password, but the address used up its attempts
    assert blocked.status_code == 429
    body = blocked.get_data(as_text=True)
    assert "Too many failed logins" in body or "登录失败次数过多" in body
    assert not logged_in(c)
    assert blocked.headers.get("Retry-After")


def test_form_and_api_share_one_failed_login_budget(make_auth_app):
    app = make_auth_app(login_rate_limit="4 per minute", login_lockout_threshold=100)
    c = app.test_client()
    for _ in range(2):
        assert api_login(c, password="wrong-password-x").status_code == 401
    for _ in range(2):
        post_login(c, password="wrong-password-x")
    resp = api_login(c)
    assert resp.status_code == 429
    assert resp.get_json()["code"] == "http_error" or "Too many" in resp.get_data(as_text=True)
    assert "access_token" not in resp.get_data(as_text=True)


def test_rate_limit_is_per_client_address(make_auth_app):
    app = make_auth_app(login_rate_limit="2 per minute", login_lockout_threshold=100)
    attacker = app.test_client()
    for _ in range(2):
        post_login(attacker, password="wrong-password-x")
    assert post_login(attacker).status_code == 429
    other = app.test_client()
    resp = other.post("/api/v1/security/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD, "provider": "db"},
                      environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert resp.status_code == 200 and resp.get_json()["access_token"]


@pytest.mark.parametrize("trusted", [0, 1])
def test_forwarded_client_address_is_used_only_behind_a_configured_proxy(make_auth_app, trusted):
    """Behind one trusted proxy each forwarded client has its own budget; without one, the header is ignored."""
    app = make_auth_app(login_rate_limit="2 per minute", login_lockout_threshold=100, trusted_proxies=trusted)

    def attempt(client_ip, password):
        return app.test_client().post("/api/v1/security/login", json={"username": ADMIN_USER, "password": password, "provider": "db"},
                                      headers={"X-Forwarded-For": client_ip}, environ_base={"REMOTE_ADDR": "10.0.0.1"})

    for _ in range(2):
        assert attempt("203.0.113.7", "wrong-password-x").status_code == 401
    assert attempt("203.0.113.7", ADMIN_PASSWORD).status_code == 429
    other = attempt("198.51.100.9", ADMIN_PASSWORD)
    if trusted:
        assert other.status_code == 200 and other.get_json()["access_token"]
    else:  # every client is the proxy's address: one shared, used-up budget
        assert other.status_code == 429


def test_account_locks_after_threshold_and_refuses_the_right_password(make_auth_app):
    app = make_auth_app(login_lockout_threshold=3, login_lockout_seconds=600)
    add_user(app, "clerk")
    c = app.test_client()
    for _ in range(3):
        post_login(c, "clerk", "not-the-password")
    assert user_row(app, "clerk")["fail_login_count"] == 3
    resp = post_login(c, "clerk", STAFF_PASSWORD)
    assert "/login/" in resp.headers["Location"]
    page = c.get(resp.headers["Location"]).get_data(as_text=True)
    assert "locked for 10 minutes" in page or "已锁定 10 分钟" in page
    assert not logged_in(c)
    # the API login is refused too, says why, and a locked attempt does not extend the lock
    refused = api_login(app.test_client(), "clerk", STAFF_PASSWORD)
    assert refused.status_code == 401 and refused.get_json()["code"] == "account_locked"
    assert "locked for 10 minutes" in refused.get_json()["message"] or "已锁定 10 分钟" in refused.get_json()["message"]
    wrong = api_login(app.test_client(), "someone-else", "nope")  # an ordinary failure keeps FAB's answer
    assert wrong.status_code == 401 and wrong.get_json().get("code") != "account_locked"
    assert user_row(app, "clerk")["fail_login_count"] == 3
    # other accounts are unaffected
    ok = app.test_client()
    login(ok)
    assert logged_in(ok)


def test_lock_expires_after_the_window(make_auth_app):
    app = make_auth_app(login_lockout_threshold=2, login_lockout_seconds=60)
    uid = add_user(app, "clerk")
    c = app.test_client()
    for _ in range(2):
        post_login(c, "clerk", "not-the-password")
    assert api_login(app.test_client(), "clerk", STAFF_PASSWORD).status_code == 401
    engine = app.extensions["crmkit"].engine
    with engine.begin() as conn:  # the last failure was two minutes ago
        conn.execute(update(user_auth).where(user_auth.c.user_id == uid)
                     .values(last_failed_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=2)))
    resp = api_login(app.test_client(), "clerk", STAFF_PASSWORD)
    assert resp.status_code == 200 and resp.get_json()["access_token"]
    assert user_row(app, "clerk")["fail_login_count"] == 0


def test_password_reset_by_admin_unlocks(make_auth_app):
    app = make_auth_app(login_lockout_threshold=2)
    uid = add_user(app, "clerk")
    c = app.test_client()
    for _ in range(2):
        post_login(c, "clerk", "not-the-password")
    with app.test_request_context():
        app.appbuilder.sm.reset_password(uid, "brand-new-secret-9")
    assert user_row(app, "clerk")["fail_login_count"] == 0
    with app.extensions["crmkit"].engine.connect() as conn:
        assert conn.execute(select(user_auth.c.last_failed_at).where(user_auth.c.user_id == uid)).scalar() is None
    assert api_login(app.test_client(), "clerk", "brand-new-secret-9").status_code == 200


def test_unknown_user_and_wrong_password_look_the_same(make_auth_app):
    app = make_auth_app()
    a = post_login(app.test_client(), "nobody-here", "whatever-pass")
    b = post_login(app.test_client(), ADMIN_USER, "whatever-pass")
    assert a.status_code == b.status_code == 302
    assert a.headers["Location"] == b.headers["Location"]


def test_public_registration_is_off(client):
    assert client.application.config["AUTH_USER_REGISTRATION"] is False
    anon = client.application.test_client()
    assert anon.get("/register/form").status_code == 404
    assert anon.post("/register/form", data={"username": "x"}).status_code in (400, 404)
    login_page = anon.get("/login/").get_data(as_text=True)
    assert "/register" not in login_page


@pytest.mark.postgres_only
def test_concurrent_failed_logins_are_all_counted_and_lock(make_auth_app):
    """Real concurrent clients: every failure is counted (atomic UPDATE), none errors, the account locks."""
    app = make_auth_app(login_lockout_threshold=8, login_rate_limit="1000 per minute")
    add_user(app, "clerk")
    statuses, errors = [], []
    barrier = threading.Barrier(8)

    def guess(i):
        try:
            c = app.test_client()
            barrier.wait(timeout=10)
            resp = c.post("/api/v1/security/login", json={"username": "clerk", "password": f"guess-{i}-xxxx", "provider": "db"},
                          environ_base={"REMOTE_ADDR": f"10.0.0.{i + 1}"})
            statuses.append(resp.status_code)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert statuses == [401] * 8
    assert user_row(app, "clerk")["fail_login_count"] == 8
    assert api_login(app.test_client(), "clerk", STAFF_PASSWORD).status_code == 401  # locked


def test_limiter_storage_follows_redis_setting():
    from crmkit.runtime.auth import flask_settings
    from crmkit.runtime.config import Settings

    assert flask_settings(Settings(database_url="sqlite://"))["RATELIMIT_STORAGE_URI"] == "memory://"
    cfg = flask_settings(Settings(database_url="sqlite://", redis_url="redis://cache:6379/2"))
    assert cfg["RATELIMIT_STORAGE_URI"] == "redis://cache:6379/2"
    assert cfg["RATELIMIT_ENABLED"] is True and cfg["AUTH_USER_REGISTRATION"] is False


def test_login_limit_uses_the_configured_rate(make_auth_app):
    app = make_auth_app(login_rate_limit="1 per minute", login_lockout_threshold=100)
    c = app.test_client()
    assert api_login(c, password="wrong-password-x").status_code == 401
    resp = api_login(c)
    assert resp.status_code == 429 and resp.headers["X-RateLimit-Limit"] == "1"
