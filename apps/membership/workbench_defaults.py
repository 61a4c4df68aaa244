"""Workbench (我的工作台) defaults for the template's front-desk and manager roles, set at install through the
workbench service. A role whose defaults an administrator already set keeps them: install never overwrites."""
from __future__ import annotations

from sqlalchemy import select

from crmkit.runtime.org.tables import ab_role
from crmkit.runtime.workbench.service import WorkbenchService

DEFAULTS: dict[str, list[tuple[str, str]]] = {
    "Front Desk": [("entity", "membership.member"), ("entity", "membership.application"), ("entity", "membership.order"),
                   ("entity", "membership.coupon"), ("report", "membership.new_members_kpi")],
    "Membership Manager": [("dashboard", "membership.overview"), ("report", "membership.lifecycle_funnel"), ("report", "membership.rfm_segments"),
                           ("report", "membership.points_by_plan"), ("report", "membership.points_liability"), ("entity", "membership.member"),
                           ("entity", "membership.application")],
}


def install_workbench_defaults(services, actor) -> None:
    bench = WorkbenchService(services.engine)
    existing = bench.role_defaults()
    with services.engine.connect() as conn:
        roles = dict(conn.execute(select(ab_role.c.name, ab_role.c.id).where(ab_role.c.name.in_(list(DEFAULTS)))).all())
    for name, favorites in DEFAULTS.items():
        if name in roles and roles[name] not in existing:
            bench.set_role_default(roles[name], favorites, actor_id=actor.id)
