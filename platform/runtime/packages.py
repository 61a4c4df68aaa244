"""App packages (preset templates): discovered through the ``crmkit.apps`` entry point group.

A package is a folder of definitions plus typed hooks. Hooks are registered by
calling methods on ``AppHooks``; nothing is looked up by dotted-path strings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import MetaData

from .errors import CrmkitError
from .records.hooks import RecordWrite

DemoSeeder = Callable[["SeedContext"], int]
# A named app action: (services, actor, payload) -> result. Called through ``run_action``; the app owns its meaning.
AppAction = Callable[[Any, Any, dict], Any]
# Runs inside the record service's write transaction after a record of the entity is written: (conn, RecordWritten).
RecordListener = Callable[[Any, Any], None]
# A named action a workflow transition runs (``{"run": "<name>"}``): ``fn(ctx: ActionContext) -> None``. It runs inside the
# transition's transaction (``crmkit.runtime.workflow.ActionContext``), unlike an AppAction, which runs on its own.
TransitionAction = Callable[..., None]
# Creates or aligns the app's roles at install, after its tables: ``fn(services, actor) -> Any``; must be idempotent.
RoleSetup = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class DetailPanel:
    """A panel an app adds to an entity's detail page: the page loads ``endpoint(record_id=…)`` with htmx."""

    entity: str
    endpoint: str
    label_en: str
    label_zh: str

Validator = Callable[[RecordWrite], "dict[str, list] | None"]


@dataclass(frozen=True)
class AppJob:
    kind: str
    handler: Callable
    schedule: Callable | None = None  # a ``huey.crontab(...)``; None: submitted on demand only
    payload: dict = field(default_factory=dict)


@dataclass(frozen=True)
class NavLink:
    """A sidebar link an app adds under its own menu group: ``url_for(endpoint)``, shown when ``visible(services, actor)``."""

    endpoint: str
    label_en: str
    label_zh: str
    icon: str
    visible: Callable[[Any, Any], bool]


@dataclass
class AppHooks:
    demo_seeders: list[DemoSeeder] = field(default_factory=list)
    table_sets: list[MetaData] = field(default_factory=list)
    actions: dict[str, AppAction] = field(default_factory=dict)
    record_listeners: list[tuple[str, RecordListener]] = field(default_factory=list)
    transition_actions: dict[str, TransitionAction] = field(default_factory=dict)
    blueprints: list[Any] = field(default_factory=list)
    detail_panels: list[DetailPanel] = field(default_factory=list)
    validators: list[tuple[str, Validator]] = field(default_factory=list)
    jobs: list[AppJob] = field(default_factory=list)
    role_setups: list[RoleSetup] = field(default_factory=list)
    nav_links: list[NavLink] = field(default_factory=list)
    event_handlers: list[tuple[str, Callable]] = field(default_factory=list)

    def demo_seeder(self, fn: DemoSeeder) -> DemoSeeder:
        """Register a function that creates demo records through the record service."""
        self.demo_seeders.append(fn)
        return fn

    def tables(self, metadata: MetaData) -> MetaData:
        """Register app-owned tables (not entities): the installer creates the missing ones, after the entity tables."""
        self.table_sets.append(metadata)
        return metadata

    def action(self, name: str) -> Callable[[AppAction], AppAction]:
        """Register a named app action (decorator). Names are unique within the app."""
        def register(fn: AppAction) -> AppAction:
            if name in self.actions:
                raise ValueError(f"app action '{name}' is already registered")
            self.actions[name] = fn
            return fn
        return register

    def transition_action(self, name: str) -> Callable[[TransitionAction], TransitionAction]:
        """``@hooks.transition_action("create_member")``: a named action this app's workflows run on a transition.
        It gets a ``crmkit.runtime.workflow.ActionContext`` and writes through the record service in the
        transition's transaction."""
        def register(fn: TransitionAction) -> TransitionAction:
            if name in self.transition_actions:
                raise ValueError(f"transition action {name!r} is registered twice")
            self.transition_actions[name] = fn
            return fn
        return register

    def on_record_written(self, entity_key: str, fn: RecordListener) -> RecordListener:
        """Run ``fn(conn, written)`` in the same transaction whenever a record of ``entity_key`` is created, updated or deleted."""
        self.record_listeners.append((entity_key, fn))
        return fn

    def roles(self, fn: RoleSetup) -> RoleSetup:
        """Register ``fn(services, actor)``, run by every install of the app (after its tables, before demo data) to
        create its roles with entity permissions, field rules and row scopes (e.g. through ``PermissionAdmin``)."""
        self.role_setups.append(fn)
        return fn

    def blueprint(self, bp) -> Any:
        """Register a Flask blueprint with the app's pages; the web app registers it when it starts."""
        self.blueprints.append(bp)
        return bp

    def detail_panel(self, entity_key: str, endpoint: str, *, en: str, zh: str) -> DetailPanel:
        """Show a panel (an htmx fragment from one of the app's blueprints) on ``entity_key``'s detail page."""
        panel = DetailPanel(entity_key, endpoint, en, zh)
        self.detail_panels.append(panel)
        return panel

    def validator(self, entity_key: str) -> Callable[[Validator], Validator]:
        """Register ``fn(write: RecordWrite) -> {field: [message]} | None``, run by the record service inside the
        write transaction before a create or update of ``entity_key``. It may also set computed values in ``write.values``."""
        def register(fn: Validator) -> Validator:
            self.validators.append((entity_key, fn))
            return fn
        return register

    def job(self, kind: str, handler: Callable, *, schedule: Callable | None = None, payload: dict | None = None) -> None:
        """Register a background job kind (``handler(ctx, payload)``), optionally run on a schedule."""
        self.jobs.append(AppJob(kind, handler, schedule, dict(payload or {})))

    def event_handler(self, key: str, fn: Callable) -> Callable:
        """Call ``fn(services, event)`` for each committed outbox event matching ``key`` (an EventBus key such as
        ``"<entity>:record.created"``). Delivery is at-least-once, so ``fn`` must be idempotent: submit a job
        with a dedupe key rather than doing the work inline."""
        self.event_handlers.append((key, fn))
        return fn

    def attach(self, records, job_registry) -> None:
        """Wire validators into the record service and job kinds into the registry (called once per Services)."""
        for entity_key, fn in self.validators:
            records.add_validator(entity_key, fn)
        for job in self.jobs:
            job_registry.register(job.kind, job.handler)
            if job.schedule is not None:
                job_registry.periodic(job.kind, job.schedule, job.payload)

    def nav_link(self, endpoint: str, *, en: str, zh: str, icon: str, visible: Callable[[Any, Any], bool]) -> NavLink:
        """Add a link to one of the app's pages to the app's sidebar group, for actors where ``visible`` is true
        (it runs on every full page render, so keep it to one cheap query)."""
        link = NavLink(endpoint, en, zh, icon, visible)
        self.nav_links.append(link)
        return link


@dataclass
class AppPackage:
    id: str
    path: Path
    hooks: AppHooks = field(default_factory=AppHooks)


@dataclass
class SeedContext:
    """What a demo seeder gets: the services to write through, and who is acting."""

    records: object
    queries: object
    catalog: object
    actor: object
    size: int = 200
    services: object = None  # the whole composition root, for seeders that run workflows or app services


class UnknownApp(CrmkitError):
    code = "unknown_app"
    status = 404


def discover() -> dict[str, AppPackage]:
    found = {}
    for ep in entry_points(group="crmkit.apps"):
        pkg = ep.load()
        if not isinstance(pkg, AppPackage):
            raise TypeError(f"entry point {ep.name} must point to an AppPackage")
        found[pkg.id] = pkg
    return dict(sorted(found.items()))


class UnknownAction(CrmkitError):
    code = "unknown_action"
    status = 404


def run_action(services, app_id: str, name: str, actor, payload: dict | None = None):
    """Call a named app action: the one way platform code (CLI, jobs, API) reaches app logic."""
    pkg = get_package(app_id)
    fn = pkg.hooks.actions.get(name)
    if fn is None:
        raise UnknownAction(f"App '{app_id}' has no action named '{name}'. Available: {', '.join(sorted(pkg.hooks.actions)) or 'none'}.")
    return fn(services, actor, dict(payload or {}))


def get_package(app_id: str) -> AppPackage:
    packages = discover()
    if app_id not in packages:
        raise UnknownApp(f"There is no app named '{app_id}'. Available: {', '.join(packages) or 'none'}.")
    return packages[app_id]
