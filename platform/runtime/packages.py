"""App packages (preset templates): discovered through the ``crmkit.apps`` entry point group.

A package is a folder of definitions plus typed hooks. Hooks are registered by
calling methods on ``AppHooks``; nothing is looked up by dotted-path strings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable

from .errors import CrmkitError
from .records.hooks import RecordWrite

DemoSeeder = Callable[["SeedContext"], int]
Validator = Callable[[RecordWrite], "dict[str, list] | None"]


@dataclass(frozen=True)
class AppJob:
    kind: str
    handler: Callable
    schedule: Callable | None = None  # a ``huey.crontab(...)``; None: submitted on demand only
    payload: dict = field(default_factory=dict)


@dataclass
class AppHooks:
    demo_seeders: list[DemoSeeder] = field(default_factory=list)
    validators: list[tuple[str, Validator]] = field(default_factory=list)
    jobs: list[AppJob] = field(default_factory=list)
    blueprints: list = field(default_factory=list)
    role_seeders: list[Callable] = field(default_factory=list)

    def demo_seeder(self, fn: DemoSeeder) -> DemoSeeder:
        """Register a function that creates demo records through the record service."""
        self.demo_seeders.append(fn)
        return fn

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

    def blueprint(self, bp) -> None:
        """Register a Flask blueprint the web app mounts (e.g. a public form); it applies its own auth and CSRF rules."""
        self.blueprints.append(bp)

    def role_seeder(self, fn: Callable) -> Callable:
        """Register ``fn(app, services)``, run once when the app is first installed through the CLI, after the
        entity permissions exist: it creates the app's roles (PermissionAdmin); administrators own them afterwards."""
        self.role_seeders.append(fn)
        return fn

    def attach(self, records, job_registry) -> None:
        """Wire validators into the record service and job kinds into the registry (called once per Services)."""
        for entity_key, fn in self.validators:
            records.add_validator(entity_key, fn)
        for job in self.jobs:
            job_registry.register(job.kind, job.handler)
            if job.schedule is not None:
                job_registry.periodic(job.kind, job.schedule, job.payload)


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


def get_package(app_id: str) -> AppPackage:
    packages = discover()
    if app_id not in packages:
        raise UnknownApp(f"There is no app named '{app_id}'. Available: {', '.join(packages) or 'none'}.")
    return packages[app_id]
