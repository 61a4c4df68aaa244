"""Per-user API keys: created on the "API keys" page (shown once, hashed at rest), used as
``Authorization: Bearer ck_…``, expiring, revocable, and refused for inactive users."""
from __future__ import annotations

import datetime as dt
import hashlib
import re

from sqlalchemy import select, update

from auth_support import STAFF_PASSWORD, add_user, make_auth_app  # noqa: F401
from conftest import csrf_from, login

from crmkit.runtime.auth.tables import api_key

MEMBERS = "/api/v1/records/membership.member"


def keys_in_db(app, **where):
    with app.extensions["crmkit"].engine.connect() as conn:
        stmt = select(api_key)
        for col, value in where.items():
            stmt = stmt.where(api_key.c[col] == value)
        return [dict(r) for r in conn.execute(stmt.order_by(api_key.c.id)).mappings()]


def create_key(client, name="Store POS", days="30"):
    page = client.get("/account/api-keys").get_data(as_text=True)
    return client.post("/account/api-keys", data={"name": name, "days": days, "csrf_token": csrf_from(page)})


def shown_key(resp) -> str:
    return re.search(r'value="(ck_[A-Za-z0-9_\-]+)"', resp.get_data(as_text=True)).group(1)


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def test_page_renders_in_both_languages(client):
    for locale, words in [("en", ["API keys", "New key", "No keys yet", "Sign out everywhere else"]),
                          ("zh", ["API 密钥", "新建密钥", "还没有密钥", "在所有其他设备退出"])]:
        client.get(f"/locale/{locale}")
        html = client.get("/account/api-keys").get_data(as_text=True)
        assert all(w in html for w in words), locale
    assert "/account/api-keys" in client.get("/home").get_data(as_text=True)  # nav + user menu


def test_anonymous_users_are_sent_to_login(app):
    resp = app.test_client().get("/account/api-keys")
    assert resp.status_code == 302 and "/login/" in resp.headers["Location"]


def test_create_shows_the_key_once_and_stores_only_its_hash(client):
    app = client.application
    resp = create_key(client)
    assert resp.status_code == 201
    key = shown_key(resp)
    assert key.startswith("ck_") and len(key) >= 40
    assert resp.headers["Cache-Control"] == "no-store"
    [row] = keys_in_db(app)
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(row.values()) and row["prefix"] == key[:10]
    assert row["name"] == "Store POS"
    assert dt.timedelta(days=29, hours=23) < row["expires_at"] - row["created_at"] <= dt.timedelta(days=30)
    later = client.get("/account/api-keys").get_data(as_text=True)
    assert key not in later and key[:10] in later and "Store POS" in later


def test_key_calls_the_api_as_its_owner(make_auth_app):
    app = make_auth_app()
    add_user(app, "integrator", role="Admin")
    c = app.test_client()
    login(c, "integrator", STAFF_PASSWORD)
    key = shown_key(create_key(c))
    api = app.test_client()
    resp = api.get(MEMBERS, headers=bearer(key))
    assert resp.status_code == 200 and resp.get_json()["items"] == []
    created = api.post(MEMBERS, json={"name": "张三", "mobile": "13812345678", "joined_on": "2024-03-15"}, headers=bearer(key))
    assert created.status_code == 201, created.get_json()
    listed = api.get(MEMBERS, headers=bearer(key)).get_json()["items"]
    assert [m["name"] for m in listed] == ["张三"]
    assert created.get_json()["_labels"]["created_by"] == "integrator"
    assert keys_in_db(app)[0]["user_id"] == created.get_json()["created_by"]
    assert keys_in_db(app)[0]["last_used_at"] is not None


def test_key_ignores_cookies_and_needs_no_csrf(client):
    key = shown_key(create_key(client))
    fresh = client.application.test_client()
    resp = fresh.post(MEMBERS, json={"name": "Li Si", "mobile": "13900001111", "joined_on": "2024-03-15"}, headers=bearer(key))
    assert resp.status_code == 201
    wrong = client.post(MEMBERS, json={"name": "Wang"}, headers=bearer("ck_" + "x" * 43))  # logged-in cookie is not used
    assert wrong.status_code == 401


def test_unknown_malformed_revoked_and_expired_keys_are_refused(client):
    app = client.application
    key = shown_key(create_key(client))
    api = app.test_client()
    for bad in ["ck_", "ck_nonsense", key[:-1], key + "x", "ck_" + key[3:].swapcase()]:
        resp = api.get(MEMBERS, headers=bearer(bad))
        assert resp.status_code == 401 and "API key was not accepted" in resp.get_json()["message"], bad
    assert api.get(MEMBERS, headers={"Authorization": f"Basic {key}"}).status_code == 401
    assert api.get(MEMBERS, headers=bearer(key)).status_code == 200
    with app.extensions["crmkit"].engine.begin() as conn:
        conn.execute(update(api_key).values(expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)))
    assert api.get(MEMBERS, headers=bearer(key)).status_code == 401
    assert "Expired" in client.get("/account/api-keys").get_data(as_text=True) or "已过期" in client.get("/account/api-keys").get_data(as_text=True)


def test_revoke(client):
    app = client.application
    key = shown_key(create_key(client))
    key_id = keys_in_db(app)[0]["id"]
    page = client.get("/account/api-keys").get_data(as_text=True)
    assert client.post(f"/account/api-keys/{key_id}/revoke").status_code == 400  # CSRF
    assert keys_in_db(app)[0]["revoked_at"] is None
    resp = client.post(f"/account/api-keys/{key_id}/revoke", data={"csrf_token": csrf_from(page)})
    assert resp.status_code == 303
    assert keys_in_db(app)[0]["revoked_at"] is not None
    assert app.test_client().get(MEMBERS, headers=bearer(key)).status_code == 401
    again = client.post(f"/account/api-keys/{key_id}/revoke", data={"csrf_token": csrf_from(page)})
    assert again.status_code == 404


def test_nobody_can_revoke_or_see_someone_elses_key(make_auth_app):
    app = make_auth_app()
    add_user(app, "mallory")
    owner = app.test_client()
    login(owner)
    key = shown_key(create_key(owner, name="Owner key"))
    key_id = keys_in_db(app)[0]["id"]
    m = app.test_client()
    login(m, "mallory", STAFF_PASSWORD)
    page = m.get("/account/api-keys").get_data(as_text=True)
    assert "Owner key" not in page and key[:10] not in page
    resp = m.post(f"/account/api-keys/{key_id}/revoke", data={"csrf_token": csrf_from(page)})
    assert resp.status_code == 404
    assert keys_in_db(app)[0]["revoked_at"] is None
    assert app.test_client().get(MEMBERS, headers=bearer(key)).status_code == 200


def test_inactive_users_keys_stop_working(make_auth_app):
    app = make_auth_app()
    uid = add_user(app, "integrator")
    c = app.test_client()
    login(c, "integrator", STAFF_PASSWORD)
    key = shown_key(create_key(c))
    assert app.test_client().get(MEMBERS, headers=bearer(key)).status_code == 200
    with app.app_context():
        sm = app.appbuilder.sm
        sm.session.execute(update(sm.user_model).where(sm.user_model.id == uid).values(active=False))
        sm.session.commit()
    assert app.test_client().get(MEMBERS, headers=bearer(key)).status_code == 401


def test_bad_input_is_refused_with_a_message_and_nothing_stored(client):
    app = client.application
    for name, days, expected in [("", "30", "Give the key a name"), ("   ", "30", "Give the key a name"),
                                 ("x" * 101, "30", "at most 100"), ("ok", "0", "between 1 and 365"),
                                 ("ok", "366", "between 1 and 365"), ("ok", "abc", "between 1 and 365"), ("ok", "", "between 1 and 365")]:
        client.get("/locale/en")
        resp = create_key(client, name, days)
        assert resp.status_code == 422, (name, days)
        assert expected in resp.get_data(as_text=True), (name, days)
    assert keys_in_db(app) == []
    assert client.post("/account/api-keys", data={"name": "no csrf", "days": "30"}).status_code == 400
    assert keys_in_db(app) == []


def test_active_key_limit(client):
    app = client.application
    from crmkit.runtime.auth.api_keys import MAX_ACTIVE_KEYS, create_key as create
    from crmkit.runtime.db import write_transaction

    with write_transaction(app.extensions["crmkit"].engine) as conn:
        for i in range(MAX_ACTIVE_KEYS):
            create(conn, 1, f"k{i}", 30, max_days=365)
    resp = create_key(client, "one too many")
    assert resp.status_code == 422 and "请先吊销不再使用的密钥" in resp.get_data(as_text=True)  # zh is the default locale
    assert len(keys_in_db(app)) == MAX_ACTIVE_KEYS


def test_key_creation_and_revocation_are_audited_without_the_key(client):
    from crmkit.runtime.storage.platform_tables import audit

    app = client.application
    key = shown_key(create_key(client, name="Audited"))
    key_id = keys_in_db(app)[0]["id"]
    page = client.get("/account/api-keys").get_data(as_text=True)
    client.post(f"/account/api-keys/{key_id}/revoke", data={"csrf_token": csrf_from(page)})
    with app.extensions["crmkit"].engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(audit).where(audit.c.category == "auth",
                                                                  audit.c.action.like("api_key%")).order_by(audit.c.id)).mappings()]
    assert [r["action"] for r in rows] == ["api_key_created", "api_key_revoked"]
    assert rows[0]["changes"]["key_id"] == key_id and rows[0]["changes"]["name"] == "Audited"
    assert all(key not in str(r) and key[3:13] not in str(r) for r in rows)


def test_admins_see_every_users_keys_and_can_revoke_them(make_auth_app):
    app = make_auth_app()
    add_user(app, "integrator")
    staff = app.test_client()
    login(staff, "integrator", STAFF_PASSWORD)
    key = shown_key(create_key(staff, name="ERP sync"))
    key_id = keys_in_db(app, name="ERP sync")[0]["id"]
    admin = app.test_client()
    login(admin)
    page = admin.get("/account/api-keys/all").get_data(as_text=True)
    assert "integrator" in page and "ERP sync" in page and key[:10] in page and key not in page
    resp = admin.post(f"/account/api-keys/all/{key_id}/revoke", data={"csrf_token": csrf_from(page)})
    assert resp.status_code == 303
    assert keys_in_db(app, id=key_id)[0]["revoked_at"] is not None
    assert app.test_client().get(MEMBERS, headers=bearer(key)).status_code == 401
    assert "ERP sync" not in admin.get("/account/api-keys/all").get_data(as_text=True)  # active keys only by default
    assert "ERP sync" in admin.get("/account/api-keys/all?show=all").get_data(as_text=True)
    from crmkit.runtime.storage import platform_tables as pt
    with app.extensions["crmkit"].engine.connect() as conn:
        changes = conn.execute(select(pt.audit.c.changes).where(pt.audit.c.action == "api_key_revoked")).scalars().all()
    assert any(c.get("by_admin") and c.get("key_id") == key_id for c in changes)
    again = admin.post(f"/account/api-keys/all/{key_id}/revoke", data={"csrf_token": csrf_from(page)})
    assert again.status_code == 404


def test_staff_cannot_open_the_overview_or_revoke_others_keys(make_auth_app):
    app = make_auth_app()
    add_user(app, "mallory", role="Public")
    owner = app.test_client()
    login(owner)
    create_key(owner, name="Owner key")
    key_id = keys_in_db(app)[0]["id"]
    m = app.test_client()
    login(m, "mallory", STAFF_PASSWORD)
    resp = m.get("/account/api-keys/all")
    assert resp.status_code == 403 and "Owner key" not in resp.get_data(as_text=True)
    page = m.get("/account/api-keys").get_data(as_text=True)
    assert m.post(f"/account/api-keys/all/{key_id}/revoke", data={"csrf_token": csrf_from(page)}).status_code == 403
    assert keys_in_db(app)[0]["revoked_at"] is None
    # without a CSRF token even an administrator's revoke is refused
    assert owner.post(f"/account/api-keys/all/{key_id}/revoke").status_code in (400, 403)
    assert keys_in_db(app)[0]["revoked_at"] is None
