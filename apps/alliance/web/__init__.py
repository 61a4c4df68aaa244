"""The merchant staff portal (联盟商家柜台)."""
from .portal import portal_blueprint

__all__ = ["portal_blueprint"]
