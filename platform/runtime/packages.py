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

DemoSeeder = Callable[["SeedContext"], int]
# A named app action a workflow transition runs (``{"run": "<name>"}``): ``fn(ctx: ActionContext) -> None``.
WorkflowAction = Callable[..., None]


@dataclass
class AppHooks:
    demo_seeders: list[DemoSeeder] = field(default_factory=list)
    actions: dict[str, WorkflowAction] = field(default_factory=dict)

    def demo_seeder(self, fn: DemoSeeder) -> DemoSeeder:
        """Register a function that creates demo records through the record service."""
        self.demo_seeders.append(fn)
        return fn

    def action(self, name: str) -> Callable[[WorkflowAction], WorkflowAction]:
        """``@hooks.action("create_member")``: a named action workflows of this app run on a transition.
        It gets a ``crmkit.runtime.workflow.ActionContext`` and writes through the record service in the
        transition's transaction."""
        def register(fn: WorkflowAction) -> WorkflowAction:
            if name in self.actions:
                raise ValueError(f"action {name!r} is registered twice")
            self.actions[name] = fn
            return fn
        return register


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
