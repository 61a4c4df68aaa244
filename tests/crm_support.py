"""Fixtures for the CRM template tests: services with crm, crm_sales and crm_service installed."""
from __future__ import annotations

import pytest

from core_support import fresh_services
from crmkit.runtime.installer import install


@pytest.fixture
def crm(databases, tmp_path_factory):
    s = fresh_services(databases, tmp_path_factory)
    install(s, "crm_sales")
    install(s, "crm_service")
    yield s
    s.engine.dispose()
