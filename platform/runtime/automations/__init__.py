"""Automations: record events, dates, schedules and buttons run conditioned actions, each occurrence once (docs/automations.md)."""
from .service import MAX_DEPTH, AutomationService, UnknownAutomation
from .tables import automation_run

__all__ = ["MAX_DEPTH", "AutomationService", "UnknownAutomation", "automation_run"]
