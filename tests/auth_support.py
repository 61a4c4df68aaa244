"""Helpers for the auth hardening tests: apps with their own settings, users, logins."""
from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from conftest import ADMIN_PASSWORD, ADMIN_USER, csrf_from, make_settings

STAFF_PASSWORD = "staff-pass-2024"


@pytest.fixture
def make_auth_app(databases, tmp_path):
    """``make_auth_app(login_rate_limit="3 per minute", ...)``: an app on a fresh membership database."""
    from crmkit.runtime.web.app import create_app

    apps = []

    def factory(**overrides):
        url = databases.fresh("membership")
        settings = dataclasses.replace(make_settings(url, tmp_path), **overrides)
        app = create_app(settings, testing=True)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        with app.app_context():
            app.extensions["sqlalchemy"].session.remove()
            app.extensions["crmkit"].engine.dispose()


def add_user(app, username: str, password: str = STAFF_PASSWORD, role: str = "Admin"):
    with app.app_context():
        sm = app.appbuilder.sm
        user = sm.add_user(username, username.title(), "Tester", f"{username}@example.com", sm.find_role(role), password)
        assert user, "user not created"
        user_id = user.id
        return user_id


def user_row(app, username: str) -> dict:
    with app.app_context():
        sm = app.appbuilder.sm
        model = sm.user_model
        row = sm.session.execute(select(model.id, model.password, model.fail_login_count, model.active)
                                 .where(model.username == username)).mappings().first()
        return dict(row) if row else None


def post_login(client, username=ADMIN_USER, password=ADMIN_PASSWORD, next_url=None):
    """POST the login form; returns the response (302 either way: to ``next`` or back to /login/)."""
    page = client.get("/login/")
    token = csrf_from(page.get_data(as_text=True))
    url = "/login/" + (f"?next={next_url}" if next_url else "")
    return client.post(url, data={"username": username, "password": password, "csrf_token": token})


def logged_in(client) -> bool:
    resp = client.get("/home")
    return resp.status_code == 200


def api_login(client, username=ADMIN_USER, password=ADMIN_PASSWORD):
    return client.post("/api/v1/security/login", json={"username": username, "password": password, "provider": "db"})
