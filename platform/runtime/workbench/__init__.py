"""The workbench (我的工作台): each user's start page with favourite functions and reports, watched records,
pending work, and per-role default favourites set by an administrator."""
from .service import FAVORITE_KINDS, WorkbenchService

__all__ = ["FAVORITE_KINDS", "WorkbenchService"]
