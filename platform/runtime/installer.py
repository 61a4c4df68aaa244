"""Install an app: validate → plan → migrate → seed. Dependencies install first."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import select

from .actor import SYSTEM, Actor
from .db import write_transaction
from .meta.loader import load_app_folder
from .packages import AppPackage, SeedContext, discover, get_package
from .services import Services
from .storage import platform_tables as pt
from .storage.plan import Plan, Planner, apply_plan, refuse_unsafe


@dataclass
class InstallReport:
    app: str
    documents_changed: bool
    plan: Plan
    seeded: int = 0
    installed: list[str] = field(default_factory=list)


def installed_apps(services: Services) -> dict[str, str]:
    with services.engine.connect() as conn:
        return {r.id: r.version for r in conn.execute(select(pt.installed_app))}


def install_order(app_id: str, packages: dict[str, AppPackage]) -> list[str]:
    order: list[str] = []

    def visit(a: str, chain: tuple[str, ...]):
        if a in chain:
            raise ValueError(f"apps depend on each other in a cycle: {' → '.join(chain + (a,))}")
        if a in order:
            return
        pkg = packages.get(a) or get_package(a)
        manifest = json.loads((pkg.path / "app.json").read_text("utf-8"))
        for dep in manifest.get("depends", []):
            visit(dep, chain + (a,))
        order.append(a)

    visit(app_id, ())
    return order


def install(services: Services, app_id: str, *, demo: bool = False, confirm: bool = False, actor: Actor = SYSTEM,
            demo_size: int = 200, progress: Callable[[str], None] = lambda msg: None) -> InstallReport:
    packages = discover()
    order = install_order(app_id, packages)
    docs = []
    for a in order:
        docs += load_app_folder(packages[a].path)
    progress(f"Validating {len(docs)} definitions from {', '.join(order)}")
    before = services.store.stamp()
    # Plan against the would-be catalog first: invalid definitions or an unconfirmed
    # destructive step stop the install before anything is stored.
    preview = services.store.preview(docs)
    plan = Planner(services.engine, preview).plan()
    refuse_unsafe(plan, confirm=confirm)  # PlanRefused lists blocked or unconfirmed steps
    stamp = services.store.save(docs, actor_id=actor.id, comment=f"install {app_id}")
    catalog = services.store.catalog()
    plan = Planner(services.engine, catalog).plan()
    progress(f"Schema plan: {len(plan.steps)} steps")
    apply_plan(services.engine, plan, confirm=confirm, progress=lambda i, n, s: progress(f"  [{i}/{n}] {s.description}"))
    now = dt.datetime.now(dt.timezone.utc)
    newly = []
    with write_transaction(services.engine) as conn:
        present = {r.id for r in conn.execute(select(pt.installed_app.c.id))}
        for a in order:
            version = json.loads((packages[a].path / "app.json").read_text("utf-8"))["version"]
            if a in present:
                conn.execute(pt.installed_app.update().where(pt.installed_app.c.id == a).values(version=version))
            else:
                conn.execute(pt.installed_app.insert().values(id=a, version=version, installed_at=now, installed_by=actor.id))
                newly.append(a)
    seeded = 0
    if demo:
        for a in order:
            for seeder in packages[a].hooks.demo_seeders:
                progress(f"Seeding demo data for {a}")
                seeded += seeder(SeedContext(records=services.records, queries=services.queries, catalog=catalog, actor=actor, size=demo_size))
    return InstallReport(app=app_id, documents_changed=stamp != before, plan=plan, seeded=seeded, installed=newly)


def seed_app_roles(app, services: Services, newly_installed: list[str]) -> int:
    """Run the role seeders of apps installed just now (needs the Flask app: roles are Flask-AppBuilder's)."""
    packages = discover()
    return sum(fn(app, services) or 0 for a in newly_installed for fn in packages[a].hooks.role_seeders)
