"""Bring the platform's own tables up to date with Alembic."""
from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from crmkit.migrations import SCRIPT_LOCATION


def upgrade_platform(engine: Engine) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
