"""The OpenAPI document at /api/v1/openapi.json: valid 3.1, generated from the installed metadata."""
from __future__ import annotations

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from api_support import MEMBERS, create_gold, member, token_client
from core_support import lab_documents, publish


@pytest.fixture
def api(app, api_token):
    """A client authenticated as the admin user with a JWT."""
    return token_client(app, api_token)


@pytest.fixture
def gold(api):
    return create_gold(api)

SPEC = "/api/v1/openapi.json"


def conforms(spec: dict, schema_name: str, instance) -> list[str]:
    """Problems of ``instance`` against a component schema (references resolved within the document)."""
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    return [e.message for e in OAS31Validator(root).iter_errors(instance)]


def test_document_is_valid_openapi_with_member_schema(api):
    resp = api.get(SPEC)
    assert resp.status_code == 200
    spec = resp.get_json()
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    schemas = spec["components"]["schemas"]
    record = schemas["membership_member"]["properties"]
    for name in ("card_no", "name", "gender", "birthday", "mobile", "email", "id_number", "level", "joined_on", "join_channel",
                 "status", "tags", "consent_sms", "total_spent", "address", "notes", "id", "row_version", "created_at", "_labels"):
        assert name in record, name
    assert record["gender"]["enum"] == ["male", "female", None]
    assert record["status"]["enum"] == ["active", "lost", "cancelled", None]
    assert record["total_spent"]["type"] == ["string", "null"] and record["birthday"]["format"] == "date"
    assert "Filter operators: eq, ne" in record["name"]["description"]
    created = schemas["membership_member_input"]
    assert set(created["required"]) == {"name", "mobile", "joined_on"}
    assert "card_no" not in created["properties"] and created["additionalProperties"] is False
    assert created["properties"]["status"]["default"] == "active"
    assert schemas["membership_member_update"]["required"] == ["row_version"]
    assert set(schemas["Error"]["required"]) == {"code", "message"}
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert spec["components"]["securitySchemes"]["cookieAuth"]["in"] == "cookie"
    assert spec["components"]["securitySchemes"]["csrfToken"]["name"] == "X-CSRFToken"
    paths = spec["paths"]
    for path in ("/records/membership.member", "/records/membership.member/{id}", "/records/membership.member/{id}/restore",
                 "/records/membership.member/{id}/history", "/records/membership.member/bulk-update",
                 "/records/membership.member/bulk-delete", "/records/membership.level", "/security/login", "/openapi.json"):
        assert path in paths, path
    params = {p["name"] for p in paths["/records/membership.member"]["get"]["parameters"]}
    assert params == {"filter", "sort", "search", "fields", "cursor", "limit", "count", "deleted"}
    assert paths["/records/membership.member"]["post"]["responses"]["422"]["$ref"] == "#/components/responses/Unprocessable"


def test_real_responses_conform_to_the_document(api, gold):
    spec = api.get(SPEC).get_json()
    payload = member(level=gold["id"], total_spent="12.5", tags=["新客"], gender="male")
    assert conforms(spec, "membership_member_input", payload) == []
    record = api.post(MEMBERS, json=payload).get_json()
    assert conforms(spec, "membership_member", record) == []
    assert conforms(spec, "membership_member_page", api.get(MEMBERS).get_json()) == []
    assert conforms(spec, "HistoryPage", api.get(f"{MEMBERS}/{record['id']}/history").get_json()) == []
    assert conforms(spec, "Error", api.get(f"{MEMBERS}?limit=0").get_json()) == []
    assert conforms(spec, "membership_member_input", {"name": "x", "gender": "other"})  # not an option → invalid


def test_installed_definitions_show_up_without_restart(api, services):
    before = api.get(SPEC).get_json()
    assert "lab_sample" not in before["components"]["schemas"]
    publish(services, lab_documents())  # every field type, a link and a child table
    spec = api.get(SPEC).get_json()
    validate(spec)
    schemas = spec["components"]["schemas"]
    assert "/records/lab.sample" in spec["paths"] and "/records/lab.sample_line" not in spec["paths"]
    assert schemas["lab_sample"]["properties"]["lines"]["items"] == {"$ref": "#/components/schemas/lab_sample_line"}
    assert schemas["lab_sample_input"]["properties"]["lines"]["items"] == {"$ref": "#/components/schemas/lab_sample_line_input"}
    assert schemas["lab_sample"]["properties"]["colors"]["items"]["enum"] == ["red", "green", "blue"]
    created = api.post("/api/v1/records/lab.sample", json={"title": "样本", "ratio": "1.25", "active": True, "day": "2024-02-29",
                                                           "at": "2024-02-29T10:00:00+08:00", "colors": ["red"], "lines": [{"item": "a", "qty": 1}]})
    assert created.status_code == 201, created.get_json()
    assert conforms(spec, "lab_sample", created.get_json()) == []
    assert created.get_json()["at"] == "2024-02-29T02:00:00+00:00"
