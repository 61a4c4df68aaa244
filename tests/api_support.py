"""Helpers shared by the REST API tests (tests/test_api_*.py)."""
from __future__ import annotations

import json
from urllib.parse import quote

from sqlalchemy import func, select

from crmkit.runtime.actor import SYSTEM

MEMBERS = "/api/v1/records/membership.member"
LEVELS = "/api/v1/records/membership.level"


def member(**overrides) -> dict:
    data = {"name": "张伟", "mobile": "13800138000", "joined_on": "2024-03-15"}
    data.update(overrides)
    return data


def row_count(services, entity_key: str, *, include_deleted: bool = True) -> int:
    """Rows in the entity's table, read straight from the database."""
    catalog = services.store.catalog()
    table = services.records.table_cache.tables(catalog)[entity_key]
    q = select(func.count()).select_from(table)
    if not include_deleted:
        q = q.where(table.c.deleted_at.is_(None))
    with services.engine.connect() as conn:
        return conn.execute(q).scalar_one()


def stored(services, entity_key: str, record_id: int, **kw) -> dict:
    return services.queries.get(entity_key, record_id, SYSTEM, **kw)


def filter_param(tree) -> str:
    return quote(json.dumps(tree), safe="")


def assert_error(resp, status: int, code: str) -> dict:
    """The response is a JSON error body with this status and code."""
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:500])
    assert resp.mimetype == "application/json", resp.get_data(as_text=True)[:200]
    body = resp.get_json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


def token_client(app, token: str):
    """A test client that sends the bearer token on every request (and has no session cookie)."""
    c = app.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return c



def create_gold(api) -> dict:
    """A level record created through the API."""
    resp = api.post(LEVELS, json={"name": "金卡", "code": "GOLD", "level_value": 30, "discount": "8.5", "color": "gold"})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()
