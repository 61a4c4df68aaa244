"""The composition root: builds the runtime's services once per process from settings."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from .config import Settings
from .db import make_engine
from .fields import FieldTypeRegistry, default_registry
from .meta.store import MetadataStore
from .policy import Policy
from .query import QueryService
from .records import RecordService
from .records.service import TableCache
from .workflow import WorkflowService


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    field_types: FieldTypeRegistry
    store: MetadataStore
    policy: Policy
    records: RecordService
    queries: QueryService
    workflows: WorkflowService | None = None

    @classmethod
    def build(cls, settings: Settings, engine: Engine | None = None, *, request_scope=None) -> "Services":
        """``request_scope`` returns a per-request object (Flask's ``g``) or None, so the policy stamp is read once per request."""
        engine = engine or make_engine(settings.database_url)
        field_types = default_registry(settings.timezone)
        store = MetadataStore(engine, field_types)
        policy = Policy(engine, catalog=store.catalog, request_scope=request_scope, timezone=settings.timezone)
        tables = TableCache()
        records = RecordService(engine, store, policy, tables, max_upload_bytes=settings.max_upload_bytes)
        queries = QueryService(engine, store, policy, tables, timezone=settings.timezone)
        return cls(
            settings=settings, engine=engine, field_types=field_types, store=store, policy=policy, records=records, queries=queries,
            workflows=WorkflowService(engine, store, policy, records, queries, actions=app_actions),
        )


def app_actions() -> dict:
    """Named workflow actions of every installed app package, by app id (their typed ``AppHooks`` registries)."""
    from .packages import discover

    return {app_id: dict(pkg.hooks.actions) for app_id, pkg in discover().items()}
