"""The server-rendered web UI (Flask + Flask-AppBuilder + htmx)."""
from .app import create_app

__all__ = ["create_app"]
