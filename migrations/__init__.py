"""Alembic migrations for the platform's own tables (crmkit.migrations)."""
from pathlib import Path

SCRIPT_LOCATION = str(Path(__file__).parent)
