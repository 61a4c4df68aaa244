"""Property-based fuzzing of /api/v1 with Schemathesis, logged in with a JWT: no 5xx, responses match the schema.

A bounded example count keeps this quick (CRMKIT_FUZZ_EXAMPLES, default 8 per operation); `make fuzz` runs it
longer. Each operation runs on a fresh copy of the membership database.
"""
from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from conftest import ADMIN_PASSWORD, ADMIN_USER

EXAMPLES = int(os.environ.get("CRMKIT_FUZZ_EXAMPLES", "8"))


@pytest.fixture
def fuzz_target(make_app):
    app = make_app("membership")
    client = app.test_client()
    token = client.post("/api/v1/security/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD, "provider": "db"}).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    doc = client.get("/api/v1/openapi.json", headers=headers).get_json()
    # The login endpoint belongs to Flask-AppBuilder and is rate-limited; fuzzing it only tests the limiter.
    doc["paths"].pop("/security/login", None)
    schema = schemathesis.openapi.from_dict(doc)
    schema.app = app
    return {"schema": schema, "headers": headers, "app": app}


CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, status_code_conformance]


def test_api_never_fails_and_matches_its_schema(fuzz_target):
    schema, headers, app = fuzz_target["schema"], fuzz_target["headers"], fuzz_target["app"]
    failures, ran = [], []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def fuzz(case):
            response = case.call(headers=headers, app=app)
            case.validate_response(response, checks=CHECKS)

        try:
            fuzz()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them together
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
        ran.append(operation.label)
    assert len(ran) >= 20 and any("bulk-upsert" in r for r in ran) and any("/sync" in r for r in ran)
    assert not failures, "\n\n".join(failures)
