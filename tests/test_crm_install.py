"""Installing the CRM templates with demo data: both templates share the customer model."""
from __future__ import annotations

from core_support import fresh_services
from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.installer import install, install_order, installed_apps
from crmkit.runtime.packages import discover


def test_templates_depend_on_the_shared_customer_model():
    packages = discover()
    assert install_order("crm_sales", packages) == ["crm", "crm_sales"]
    assert install_order("crm_service", packages) == ["crm", "crm_service"]
    assert packages["crm_sales"].path != packages["crm_service"].path


def test_install_both_with_demo(databases, tmp_path_factory):
    s = fresh_services(databases, tmp_path_factory)
    try:
        first = install(s, "crm_sales", demo=True, demo_size=40)
        second = install(s, "crm_service", demo=True, demo_size=40)
        assert first.installed == ["crm", "crm_sales"] and second.installed == ["crm_service"]
        assert set(installed_apps(s)) == {"crm", "crm_sales", "crm_service"}
        q = s.queries
        accounts = q.list("crm.account", SYSTEM, limit=200, count="exact")
        assert accounts.total >= 8
        assert all(a["name_key"] for a in accounts.rows)
        assert q.list("crm_sales.lead", SYSTEM, count="exact").total >= 15
        opps = q.list("crm_sales.opportunity", SYSTEM, limit=200, count="exact").rows
        assert all(o["lost_reason"] for o in opps if o["stage"] == "lost")
        quotes = q.list("crm_sales.quote", SYSTEM, limit=200).rows
        assert all(qt["total"] > 0 for qt in quotes)
        tickets = q.list("crm_service.ticket", SYSTEM, limit=200, count="exact")
        assert tickets.total >= 15
        assert {t["sla_state"] for t in tickets.rows} <= {"on_track", "at_risk", "breached", "paused", "met"}
        assert all(t["resolution_due"] for t in tickets.rows if t["status"] != "waiting_on_customer")
        again = install(s, "crm_service", demo=True, demo_size=40)
        assert again.seeded == 0
    finally:
        s.engine.dispose()
