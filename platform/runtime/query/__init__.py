"""The one read path: (entity, filter tree, sort, fields, cursor) → a policy-filtered select."""
from .service import Page, QueryService

__all__ = ["Page", "QueryService"]
