"""Application factory: Flask + Flask-AppBuilder (auth, users, roles) + the crmkit runtime."""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask, redirect, url_for
from flask_appbuilder import AppBuilder, IndexView, expose
from flask_appbuilder.const import AUTH_DB
from flask_appbuilder.models.sqla.base import SQLA
from flask_wtf.csrf import CSRFProtect

from ..config import Settings
from ..db import configure_sqlite, is_sqlite
from ..services import Services
from .permissions import sync_entity_permissions

log = logging.getLogger(__name__)


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
        "FAB_UPDATE_PERMS": True,
        "LANGUAGES": {"zh": {"flag": "cn", "name": "中文"}, "en": {"flag": "gb", "name": "English"}},
        "BABEL_DEFAULT_LOCALE": settings.default_locale,
        "WTF_CSRF_ENABLED": True,
        "WTF_CSRF_TIME_LIMIT": None,
        "WTF_CSRF_HEADERS": ["X-CSRFToken", "X-CSRF-Token"],
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=12),
        "JWT_ACCESS_TOKEN_EXPIRES": timedelta(seconds=settings.jwt_expires_seconds),
        "MAX_CONTENT_LENGTH": settings.max_upload_bytes + 1024 * 1024,
        "RATELIMIT_ENABLED": False,
        "FAB_BASE_TEMPLATE": "crmkit/fab_base.html",
        "FAB_PASSWORD_COMPLEXITY_ENABLED": False,
    }


def create_app(settings: Settings | None = None, *, testing: bool = False) -> Flask:
    settings = settings or Settings.from_env()
    secret = settings.require_secret_key()
    app = Flask(__name__, template_folder="templates", static_folder=None)
    app.config.update(flask_config(settings, secret))
    app.config["TESTING"] = testing

    db = SQLA()
    db.init_app(app)
    csrf = CSRFProtect(app)
    with app.app_context():
        engine = db.engine
        if is_sqlite(engine):
            configure_sqlite(engine)
        services = Services.build(settings, engine=engine)
        app.extensions["crmkit"] = services
        app.extensions["crmkit_csrf"] = csrf
        appbuilder = AppBuilder(indexview=HomeView, base_template="crmkit/fab_base.html")
        appbuilder.init_app(app, db.session)
        _register(app, services, csrf)
        sync_entity_permissions(app, services)
    return app


def _register(app: Flask, services: Services, csrf: CSRFProtect) -> None:
    from ..api.blueprint import api_blueprint
    from .errors import register_error_handlers
    from .views import web_blueprint

    app.register_blueprint(web_blueprint)
    csrf.exempt(api_blueprint)  # the API checks CSRF itself for cookie-authenticated calls
    app.register_blueprint(api_blueprint)
    register_error_handlers(app)


def services_of(app: Flask) -> Services:
    return app.extensions["crmkit"]
