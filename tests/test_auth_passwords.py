"""The password policy (length >= 8, not a common password, no composition rules) on every path that sets one."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from auth_support import STAFF_PASSWORD, add_user, make_auth_app, user_row  # noqa: F401
from conftest import csrf_from, login

from crmkit.runtime.auth.passwords import WeakPassword, check_password, common_passwords, password_problem
from crmkit.runtime.cli import main

REFUSED = [
    ("", "at least 8"),
    ("short", "at least 8"),
    ("1234567", "at least 8"),
    ("password", "commonly used"),
    ("Password1", "commonly used"),
    ("  qwerty123 ", "commonly used"),
    ("woaini1314", "commonly used"),
    ("12345678", "commonly used"),
    ("x" * 257, "at most 256"),
]
ACCEPTED = ["correct horse", "lowercaseonly", "长城长城长城长城", "8charsok", "no digits or caps here"]


@pytest.mark.parametrize("password,reason", REFUSED)
def test_policy_refuses_with_a_reason(password, reason):
    problem = password_problem(password)
    assert problem is not None and reason in problem.en
    assert problem.zh and problem.zh != problem.en
    with pytest.raises(WeakPassword):
        check_password(password)


@pytest.mark.parametrize("password", ACCEPTED)
def test_policy_has_no_composition_rules(password):
    assert password_problem(password) is None


def test_password_equal_to_username_is_refused():
    assert "same as the username" in password_problem("margaret-k", "Margaret-K").en


def test_common_list_is_vendored_and_sizeable():
    words = common_passwords()
    assert len(words) >= 200
    assert {"123456789", "password", "qwertyuiop", "5201314"} <= words
    assert all(w == w.lower() and w.strip() == w for w in words)


def _user_count(app):
    with app.app_context():
        sm = app.appbuilder.sm
        return sm.session.execute(select(func.count()).select_from(sm.user_model)).scalar()


def _add_user_form(client, password):
    page = client.get("/users/add").get_data(as_text=True)
    with client.application.app_context():
        role_id = client.application.appbuilder.sm.find_role("Admin").id
    return client.post("/users/add", data={
        "first_name": "New", "last_name": "Person", "username": "newbie", "email": "newbie@example.com",
        "active": "y", "roles": str(role_id), "password": password, "conf_password": password, "csrf_token": csrf_from(page),
    })


def test_admin_add_user_form_enforces_the_policy(client):
    app = client.application
    before = _user_count(app)
    resp = _add_user_form(client, "password1")
    assert resp.status_code == 200
    body = resp.get_data(as_text=True)
    assert "commonly used" in body or "常见密码" in body
    assert _user_count(app) == before
    resp = _add_user_form(client, "a calm blue lake")
    assert resp.status_code == 302
    assert _user_count(app) == before + 1


def test_admin_reset_password_form_enforces_the_policy(make_auth_app):
    app = make_auth_app()
    uid = add_user(app, "clerk")
    before = user_row(app, "clerk")["password"]
    admin = app.test_client()
    login(admin)
    page = admin.get(f"/resetpassword/form?pk={uid}").get_data(as_text=True)
    resp = admin.post(f"/resetpassword/form?pk={uid}", data={"password": "abc", "conf_password": "abc", "csrf_token": csrf_from(page)})
    assert resp.status_code == 200
    assert "at least 8" in resp.get_data(as_text=True) or "至少需要 8" in resp.get_data(as_text=True)
    assert user_row(app, "clerk")["password"] == before


def test_change_my_password_form_enforces_the_policy(make_auth_app):
    app = make_auth_app()
    add_user(app, "clerk")
    before = user_row(app, "clerk")["password"]
    c = app.test_client()
    login(c, "clerk", STAFF_PASSWORD)
    page = c.get("/resetmypassword/form").get_data(as_text=True)
    resp = c.post("/resetmypassword/form", data={"password": "iloveyou", "conf_password": "iloveyou", "csrf_token": csrf_from(page)})
    assert resp.status_code == 200
    assert user_row(app, "clerk")["password"] == before


def test_security_manager_paths_enforce_the_policy(make_auth_app):
    app = make_auth_app()
    uid = add_user(app, "clerk")
    before = user_row(app, "clerk")["password"]
    with app.test_request_context():
        sm = app.appbuilder.sm
        with pytest.raises(WeakPassword):
            sm.add_user("weak", "W", "K", "weak@example.com", sm.find_role("Admin"), "qwertyuiop")
        with pytest.raises(WeakPassword):
            sm.reset_password(uid, "1234")
        with pytest.raises(WeakPassword):
            sm.reset_password(uid, "clerk")
    assert user_row(app, "weak") is None
    assert user_row(app, "clerk")["password"] == before


def test_cli_create_admin_refuses_a_weak_password(empty_database_url, tmp_path):
    env = {"CRMKIT_DATABASE_URL": empty_database_url, "CRMKIT_VAR_DIR": str(tmp_path / "var")}
    assert CliRunner().invoke(main, ["init"], env=env).exit_code == 0
    r = CliRunner().invoke(main, ["create-admin", "--username", "boss", "--password", "admin123"], env=env)
    assert r.exit_code == 1
    assert "commonly used" in r.output and "--password" in r.output
    r = CliRunner().invoke(main, ["create-admin", "--username", "boss", "--password", "a sturdy gate"], env=env)
    assert r.exit_code == 0, r.output
    assert "username: boss" in r.output
