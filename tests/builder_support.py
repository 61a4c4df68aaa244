"""Helpers for the builder tests: the builder service of a test app and an admin actor."""
from __future__ import annotations

from crmkit.builder.service import BuilderService
from crmkit.runtime.actor import Actor

ADMIN = Actor(id=1, username="admin", is_admin=True)


def builder_of(services) -> BuilderService:
    return BuilderService(services)
