"""Login auditing through Flask-AppBuilder's security manager: every form and API login attempt,
successful or not (unknown user names included), and every logout become audit entries."""
from __future__ import annotations

import logging

from flask import current_app, has_request_context, request
from flask_appbuilder.security.sqla.manager import SecurityManager

from .service import record_event_now

log = logging.getLogger(__name__)


class LoginAuditMixin:
    """Put before other security-manager classes so refused attempts (e.g. a locked account) are audited too."""

    def auth_user_db(self, username, password):
        user = super().auth_user_db(username, password)
        _record_login(user, username, "login" if user is not None else "login_failed")
        return user

    def on_user_logout(self, user) -> None:
        super().on_user_logout(user)  # type: ignore[misc]  # a mixin over Flask-AppBuilder's (untyped) security manager
        _record_login(user, getattr(user, "username", None), "logout")


class AuditedSecurityManager(LoginAuditMixin, SecurityManager):
    """FAB's SQLAlchemy security manager with login auditing."""


def _record_login(user, username, action: str) -> None:
    services = current_app.extensions.get("crmkit")
    if services is None:
        return
    ip = request.remote_addr if has_request_context() else None
    path = request.path if has_request_context() else None
    record_event_now(services.engine, category="auth", action=action, actor_id=getattr(user, "id", None),
                     subject=str(username or "")[:200] or None, ip=ip, changes={"path": path} if path else {})
