"""Install an app: validate → plan → migrate → roles → seed. Dependencies install first."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import inspect, select

from .actor import SYSTEM, Actor
from .db import write_transaction
from .meta.loader import load_app_folder
from .packages import AppPackage, SeedContext, discover, get_package
from .services import Services
from .storage import platform_tables as pt
from .storage.plan import Plan
from .storage.publish import publish_documents


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


def create_app_tables(services: Services, pkg: AppPackage, progress: Callable[[str], None] = lambda msg: None) -> list[str]:
    """Create the app-owned tables (``AppHooks.tables``) that do not exist yet; returns their names.

    Existing tables are left as they are: an app changes its own tables by adding new ones, never by
    editing a created one in place. A name that clashes with an entity table is refused."""
    entity_tables = {e.table_name for e in services.store.catalog().entities.values()} if pkg.hooks.table_sets else set()
    created: list[str] = []
    for md in pkg.hooks.table_sets:
        clash = sorted(set(md.tables) & entity_tables)
        if clash:
            raise ValueError(f"app {pkg.id}: table(s) {', '.join(clash)} clash with entity tables")
        with write_transaction(services.engine) as conn:
            missing = [t for t in md.sorted_tables if not inspect(conn).has_table(t.name)]
            md.create_all(conn, tables=missing)
        created += [t.name for t in missing]
    if created:
        progress(f"Created app tables: {', '.join(created)}")
    return created


def install(services: Services, app_id: str, *, demo: bool = False, confirm: bool = False, actor: Actor = SYSTEM,
            demo_size: int = 200, progress: Callable[[str], None] = lambda msg: None) -> InstallReport:
    packages = discover()
    order = install_order(app_id, packages)
    docs = []
    for a in order:
        docs += load_app_folder(packages[a].path)
    progress(f"Validating {len(docs)} definitions from {', '.join(order)}")
    before = services.store.stamp()
    # Invalid definitions or an unconfirmed destructive step stop the install before anything is stored;
    # then the tables change and the definitions switch in the order running workers can follow.
    stamp, plan = publish_documents(services.store, services.engine, docs, confirm=confirm, actor_id=actor.id, comment=f"install {app_id}",
                                    progress=lambda i, n, s: progress(f"  [{i}/{n}] {s.description}"))
    progress(f"Schema plan: {len(plan.steps)} steps applied")
    catalog = services.store.catalog()
    for a in order:
        create_app_tables(services, packages[a], progress)
    for a in order:
        for setup in packages[a].hooks.role_setups:
            progress(f"Setting up roles for {a}")
            setup(services, actor)
    now = dt.datetime.now(dt.timezone.utc)
    newly = []
    with write_transaction(services.engine) as conn:
        present = {r.id for r in conn.execute(select(pt.installed_app.c.id))}
        for a in order:
            version = json.loads((packages[a].path / "app.json").read_text("utf-8"))["version"]
            record_template_base(conn, a, version, [d for d in docs if d.app == a])
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
                seeded += seeder(SeedContext(records=services.records, queries=services.queries, catalog=catalog, actor=actor, size=demo_size,
                                                 services=services))
    return InstallReport(app=app_id, documents_changed=stamp != before, plan=plan, seeded=seeded, installed=newly)


def record_template_base(conn, app_id: str, version: str, docs) -> None:
    """Keep the template's documents as installed: the base of a later three-way upgrade (crmkit.builder.upgrade)."""
    import copy

    from .meta.loader import document_key

    now = dt.datetime.now(dt.timezone.utc)
    conn.execute(pt.template_base.delete().where(pt.template_base.c.app == app_id))
    for d in docs:
        conn.execute(pt.template_base.insert().values(app=app_id, app_version=version, kind=d.kind, key=document_key(d),
                                                      body=copy.deepcopy(d.body), recorded_at=now))
