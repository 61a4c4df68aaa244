"""The membership app's own pages: the points panel on a member's page and the staff points desk."""
from .views import points_blueprint

__all__ = ["points_blueprint"]
