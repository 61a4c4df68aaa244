"""Application factory: Flask + Flask-AppBuilder (auth, users, roles) + the crmkit runtime."""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask, redirect, url_for
from flask_appbuilder import AppBuilder, IndexView, expose
from flask_appbuilder.const import AUTH_DB
from flask_appbuilder.models.sqla.base import SQLA
from flask_wtf.csrf import CSRFProtect

from werkzeug.middleware.proxy_fix import ProxyFix

from ..audit.logins import LoginAuditMixin

from ..auth import flask_settings as auth_flask_settings
from ..auth.security_manager import HardenedSecurityManager
from ..auth.log_redaction import install_log_redaction
from ..config import Settings
from ..db import configure_sqlite, is_sqlite
from ..permissions.request_scope import flask_request_scope
from ..services import Services
from .permissions import sync_entity_permissions

log = logging.getLogger(__name__)


class CrmkitSecurityManager(LoginAuditMixin, HardenedSecurityManager):
    """FAB's security manager: login auditing (audit) in front of the login hardening (auth)."""


class HomeView(IndexView):
    """The root page sends people to their workspace."""

    @expose("/")
    def index(self):
        return redirect(url_for("crmkit_web.home"))


def flask_config(settings: Settings, secret_key: str) -> dict:
    return {
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": settings.database_url,
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
        "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"timeout": 30}} if settings.database_url.startswith("sqlite") else {"pool_pre_ping": True},
        "APP_NAME": "crmkit",
        "AUTH_TYPE": AUTH_DB,
        "AUTH_ROLE_ADMIN": "Admin",
        "AUTH_ROLE_PUBLIC": "Public",
        "FAB_ADD_SECURITY_API": False,  # its CRUD schemas break on marshmallow 4; the login API is always on
        "FAB_API_SWAGGER_UI": False,
        "FAB_UPDATE_PERMS": settings.framework_permissions_on_start,
        "LANGUAGES": {"zh": {"flag": "cn", "name": "中文"}, "en": {"flag": "gb", "name": "English"}},
        "BABEL_DEFAULT_LOCALE": settings.default_locale,
        "WTF_CSRF_ENABLED": True,
        "WTF_CSRF_TIME_LIMIT": None,
        "WTF_CSRF_HEADERS": ["X-CSRFToken", "X-CSRF-Token"],
        "JWT_ACCESS_TOKEN_EXPIRES": timedelta(seconds=settings.jwt_expires_seconds),
        "MAX_CONTENT_LENGTH": settings.max_upload_bytes + 1024 * 1024,
        "FAB_BASE_TEMPLATE": "crmkit/fab_base.html",
        **auth_flask_settings(settings),  # cookies, session lifetime, password policy, login rate limit
    }


def create_app(settings: Settings | None = None, *, testing: bool = False) -> Flask:
    settings = settings or Settings.from_env()
    secret = settings.require_secret_key()
    install_log_redaction()
    app = Flask(__name__, template_folder="templates", static_folder=None)
    app.config.update(flask_config(settings, secret))
    app.config["TESTING"] = testing
    if settings.trusted_proxies:
        # Client address and scheme from the proxies' X-Forwarded-* headers (rate limits, audit, Secure
        # cookies), trusting exactly as many hops as configured: more would let clients forge their address.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]  # Flask's documented way to wrap WSGI middleware

    db = SQLA()
    db.init_app(app)
    csrf = CSRFProtect(app)
    with app.app_context():
        engine = db.engine
        if is_sqlite(engine):
            configure_sqlite(engine)
        services = Services.build(settings, engine=engine, request_scope=flask_request_scope)
        app.extensions["crmkit"] = services
        app.extensions["crmkit_csrf"] = csrf
        appbuilder = AppBuilder(indexview=HomeView, base_template="crmkit/fab_base.html", security_manager_class=CrmkitSecurityManager)
        appbuilder.init_app(app, db.session)
        _register(app, services, csrf)
        sync_entity_permissions(app, services)
    return app


def _register(app: Flask, services: Services, csrf: CSRFProtect) -> None:
    from ..api.blueprint import api_blueprint
    from ..auth import register_auth
    from .errors import register_error_handlers
    from .views import web_blueprint
    from ..audit.views import audit_blueprint
    from ..privacy.views import privacy_api_blueprint, privacy_blueprint
    from ..org.views import org_blueprint

    app.register_blueprint(web_blueprint)
    from ..permissions.views import permissions_blueprint
    from .export import export_blueprint

    app.register_blueprint(permissions_blueprint)
    app.register_blueprint(export_blueprint)
    from .import_views import import_blueprint

    app.register_blueprint(import_blueprint)
    app.register_blueprint(audit_blueprint)
    app.register_blueprint(privacy_blueprint)
    csrf.exempt(privacy_api_blueprint)  # request_actor checks CSRF for cookie-authenticated calls
    app.register_blueprint(privacy_api_blueprint)
    app.register_blueprint(org_blueprint)
    from ..jobs.views import jobs_blueprint

    app.register_blueprint(jobs_blueprint)
    from ..messaging.views import messages_admin_blueprint, notifications_blueprint

    app.register_blueprint(notifications_blueprint)
    app.register_blueprint(messages_admin_blueprint)
    from ..webhooks.views import webhooks_blueprint

    app.register_blueprint(webhooks_blueprint)
    from ..reports.views import reports_blueprint

    app.register_blueprint(reports_blueprint)
    from ..workbench.views import workbench_blueprint

    app.register_blueprint(workbench_blueprint)
    from ...builder.reports import report_builder_blueprint

    app.register_blueprint(report_builder_blueprint)
    from ...builder.dashboards import dashboard_builder_blueprint

    app.register_blueprint(dashboard_builder_blueprint)
    csrf.exempt(api_blueprint)  # the API checks CSRF itself for cookie-authenticated calls
    app.register_blueprint(api_blueprint)
    _register_app_pages(app)
    from ..workflow.views import register_workflow

    register_workflow(app, csrf)
    from ..automations.views import register_automations
    from ...builder.automations import automation_designer_blueprint

    register_automations(app, csrf)
    app.register_blueprint(automation_designer_blueprint)
    register_error_handlers(app)
    register_auth(app, services.settings)
    from crmkit.builder.views import register_builder

    from .board_views import board_blueprint

    app.register_blueprint(board_blueprint)
    register_builder(app)


def _register_app_pages(app: Flask) -> None:
    """Blueprints and detail-page panels that app packages registered through their hooks."""
    from ..packages import discover

    panels: dict[str, list] = {}
    for pkg in discover().values():
        for bp in pkg.hooks.blueprints:
            app.register_blueprint(bp)
        for panel in pkg.hooks.detail_panels:
            panels.setdefault(panel.entity, []).append(panel)
    app.extensions["crmkit_panels"] = panels
    app.extensions["crmkit_nav_links"] = {pkg.id: list(pkg.hooks.nav_links) for pkg in discover().values() if pkg.hooks.nav_links}


def services_of(app: Flask) -> Services:
    return app.extensions["crmkit"]
