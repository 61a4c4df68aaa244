"""The composition root: builds the runtime's services once per process from settings."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from .config import Settings
from .db import make_engine
from .events import EventBus
from .fields import FieldTypeRegistry, default_registry
from .jobs import JobService
from .jobs.background import Background, build_background
from .messaging import MessagingService, build_messaging
from .meta.store import MetadataStore
from .packages import discover
from .policy import Policy
from .query import QueryService
from .records import RecordService
from .records.service import TableCache
from .saved_filters import SavedFilterService
from .webhooks import WebhookService
from .workflow import WorkflowService

if TYPE_CHECKING:
    from .automations import AutomationService


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    field_types: FieldTypeRegistry
    store: MetadataStore
    policy: Policy
    records: RecordService
    queries: QueryService
    background: Background
    messaging: MessagingService
    webhooks: WebhookService
    workflows: WorkflowService
    automations: "AutomationService"
    saved_filters: SavedFilterService

    @property
    def jobs(self) -> JobService:
        return self.background.jobs

    @property
    def events(self) -> EventBus:
        return self.background.events

    @classmethod
    def build(cls, settings: Settings, engine: Engine | None = None, *, request_scope=None) -> "Services":
        """``request_scope`` returns a per-request object (Flask's ``g``) or None, so the policy stamp is read once per request."""
        engine = engine or make_engine(settings.database_url)
        field_types = default_registry(settings.timezone)
        store = MetadataStore(engine, field_types, request_scope=request_scope)
        policy = Policy(engine, catalog=store.catalog, request_scope=request_scope, timezone=settings.timezone)
        tables = TableCache()
        background = build_background(settings, engine)
        records = RecordService(engine, store, policy, tables, max_upload_bytes=settings.max_upload_bytes, on_commit=background.wake_outbox)
        for pkg in discover().values():  # app hooks that must run inside record writes (e.g. points for an order)
            for entity_key, listener in pkg.hooks.record_listeners:
                records.listen(entity_key, listener)
        queries = QueryService(engine, store, policy, tables, timezone=settings.timezone)
        messaging = build_messaging(settings, engine, background.jobs)
        webhooks = WebhookService(engine, background.jobs)
        from .automations import AutomationService

        automations = AutomationService(engine, store, records, queries, messaging, webhooks, background.jobs, timezone=settings.timezone)
        services = cls(
            settings=settings, engine=engine, field_types=field_types, store=store, policy=policy,
            records=records, queries=queries,
            workflows=WorkflowService(engine, store, policy, records, queries, actions=app_transition_actions),
            background=background,
            messaging=messaging, webhooks=webhooks, automations=automations,
            saved_filters=SavedFilterService(engine, store, policy, queries),
        )
        services.webhooks.register(background.jobs.registry, background.events)
        automations.register(background.jobs.registry, background.events)
        from .imports.job import register_import_jobs  # these import the record service; load them last

        register_import_jobs(background.jobs.registry)
        from .reports.export import register_report_jobs

        register_report_jobs(background.jobs.registry)
        for package in discover().values():
            package.hooks.attach(services.records, background.jobs.registry)
            for key, handler in package.hooks.event_handlers:
                background.events.subscribe(key, functools.partial(handler, services))
        background.jobs.attach(services)
        return services


def app_transition_actions() -> dict:
    """Named transition actions of every installed app package, by app id (their typed ``AppHooks`` registries)."""
    return {app_id: dict(pkg.hooks.transition_actions) for app_id, pkg in discover().items()}
