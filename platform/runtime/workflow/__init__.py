"""The workflow engine: transitions that move a record's ``workflow_state``, approvals, history and inboxes.

Definitions are the ``workflow`` metadata kind (``crmkit.runtime.meta.workflows``); the state field
changes only through ``WorkflowService`` (the record service refuses it everywhere else).
"""
from . import tables
from .errors import TransitionNotAvailable
from .service import ActionContext, AvailableTransition, TransitionResult, WorkflowService

__all__ = ["ActionContext", "AvailableTransition", "TransitionNotAvailable", "TransitionResult", "WorkflowService", "tables"]
