"""Test fixtures. One variable picks the database: CRMKIT_TEST_DATABASE_URL.

Unset → SQLite files under pytest's tmp dir. A PostgreSQL URL → every test gets its
own database cloned from a prepared template (CREATE DATABASE … TEMPLATE), so tests
never share state and can run against a real server with concurrent clients.
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from crmkit.runtime.actor import SYSTEM
from crmkit.runtime.config import Settings

ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-pass-1"
TEST_URL = os.environ.get("CRMKIT_TEST_DATABASE_URL", "").strip()
BACKEND = make_url(TEST_URL).get_backend_name() if TEST_URL else "sqlite"


def pytest_report_header(config):
    return f"crmkit database backend: {BACKEND}" + (f" ({make_url(TEST_URL).render_as_string(hide_password=True)})" if TEST_URL else "")


class Databases:
    """Creates template databases once, then hands out fresh copies."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.templates: dict[str, str] = {}
        self.created: list[str] = []
        self.counter = itertools.count()
        self.tag = uuid.uuid4().hex[:8]

    # -- naming ------------------------------------------------------------------
    def _new_url(self, name: str) -> str:
        if BACKEND == "sqlite":
            return f"sqlite:///{self.workdir / (name + '.db')}"
        return make_url(TEST_URL).set(database=name).render_as_string(hide_password=False)

    def _admin_engine(self):
        return create_engine(make_url(TEST_URL).render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")

    # -- templates ---------------------------------------------------------------
    def template(self, kind: str) -> str:
        if kind not in self.templates:
            name = f"crmkit_tpl_{self.tag}_{kind}"
            url = self._new_url(name)
            if BACKEND == "postgresql":
                with self._admin_engine().connect() as c:
                    c.execute(text(f'CREATE DATABASE "{name}"'))
                self.created.append(name)
            build_template(url, kind, self.workdir / f"var_{name}")
            self.templates[kind] = name
        return self.templates[kind]

    def fresh(self, kind: str) -> str:
        tpl = self.template(kind)
        name = f"crmkit_t_{self.tag}_{next(self.counter)}"
        if BACKEND == "sqlite":
            src = self.workdir / f"{tpl}.db"
            shutil.copyfile(src, self.workdir / f"{name}.db")
        else:
            with self._admin_engine().connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{tpl}"'))
            self.created.append(name)
        return self._new_url(name)

    def empty(self) -> str:
        """A brand-new database with no tables at all."""
        name = f"crmkit_e_{self.tag}_{next(self.counter)}"
        if BACKEND == "postgresql":
            with self._admin_engine().connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}"'))
            self.created.append(name)
        return self._new_url(name)

    def drop_all(self):
        """Drop every database this session created, four at a time (a run creates ~1,600 and dropping one waits
        mostly on the server unlinking its files, ~60 ms)."""
        if BACKEND != "postgresql":
            return
        from concurrent.futures import ThreadPoolExecutor

        eng = self._admin_engine()

        def drop(name: str) -> None:
            with eng.connect() as c:
                c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))

        templates = set(self.templates.values())
        with ThreadPoolExecutor(4) as pool:  # copies first: a template cannot be dropped while a copy is being made from it
            list(pool.map(drop, [n for n in reversed(self.created) if n not in templates]))
        for name in templates:
            drop(name)
        eng.dispose()


def build_template(url: str, kind: str, var_dir: Path) -> None:
    from crmkit.runtime.audit import flush_sealer
    from crmkit.runtime.installer import install
    from crmkit.runtime.services import Services
    from crmkit.runtime.storage.migrate import upgrade_platform
    from crmkit.runtime.web.app import create_app

    settings = Settings(database_url=url, secret_key="template-secret-key-0123456789abcdef0123456789", var_dir=var_dir)
    services = Services.build(settings)
    upgrade_platform(services.engine)
    flush_sealer(services.engine)
    services.engine.dispose()
    app = create_app(settings, testing=True)
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user(ADMIN_USER, "Ada", "Admin", "admin@example.com", sm.find_role("Admin"), ADMIN_PASSWORD)
        if kind in ("membership", "alliance"):  # alliance installs membership first
            install(app.extensions["crmkit"], kind)
            from crmkit.runtime.web.permissions import sync_entity_permissions

            app.extensions["sqlalchemy"].session.remove()  # drop the session's pre-install snapshot (SQLite: busy)
            sync_entity_permissions(app, app.extensions["crmkit"])
        # Close every connection before the file is copied, so SQLite folds its WAL into the database file, and
        # PostgreSQL can copy the template (no session may be connected to it, the audit sealer's included).
        app.extensions["sqlalchemy"].session.remove()
        flush_sealer(app.extensions["crmkit"].engine)
        app.extensions["crmkit"].engine.dispose()


@pytest.fixture(scope="session")
def databases(tmp_path_factory):
    dbs = Databases(tmp_path_factory.mktemp("dbs"))
    yield dbs
    dbs.drop_all()


def make_settings(url: str, tmp_path: Path) -> Settings:
    """Settings for an app on a copy of a template database, which already has Flask-AppBuilder's permission rows
    (``build_template`` created them), so the app does not write them again at start."""
    return Settings(database_url=url, secret_key="test-secret-key-0123456789abcdef0123456789abcdef", var_dir=tmp_path / "var",
                    framework_permissions_on_start=False)


@pytest.fixture
def empty_database_url(databases):
    return databases.empty()


@pytest.fixture
def make_app(databases, tmp_path):
    """Build an app on a fresh database: ``make_app("membership")`` or ``make_app("base")``."""
    from crmkit.runtime.web.app import create_app

    apps = []

    def factory(kind: str = "membership"):
        url = databases.fresh(kind)
        app = create_app(make_settings(url, tmp_path), testing=True)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        with app.app_context():
            app.extensions["sqlalchemy"].session.remove()
            app.extensions["crmkit"].engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app("membership")


@pytest.fixture
def services(app):
    """The runtime services of ``app`` (record service, query service, store, policy)."""
    return app.extensions["crmkit"]


@pytest.fixture
def base_services(make_app):
    """Services on a database with only the platform tables and an admin user."""
    return make_app("base").extensions["crmkit"]


@pytest.fixture
def actor():
    return SYSTEM


CSRF_PATTERNS = (
    re.compile(r'name="csrf_token"[^>]*value="([^"]+)"'),
    re.compile(r'value="([^"]+)"[^>]*name="csrf_token"'),
    re.compile(r'"X-CSRFToken":\s*"([^"]+)"'),
    re.compile(r'name="csrf-token"\s+content="([^"]+)"'),
)


def csrf_from(html: str) -> str:
    for pat in CSRF_PATTERNS:
        m = pat.search(html)
        if m:
            return m.group(1)
    raise AssertionError("no CSRF token in page")


def login(client, username=ADMIN_USER, password=ADMIN_PASSWORD):
    page = client.get("/login/")
    token = csrf_from(page.get_data(as_text=True))
    resp = client.post("/login/", data={"username": username, "password": password, "csrf_token": token})
    assert resp.status_code in (302, 303), resp.get_data(as_text=True)[:500]
    return resp


@pytest.fixture
def client(app):
    """A Flask test client logged in as the admin user."""
    c = app.test_client()
    login(c)
    return c


@pytest.fixture
def csrf_token(client):
    """A CSRF token valid for ``client``'s session."""
    return csrf_from(client.get("/home").get_data(as_text=True))


@pytest.fixture
def api_token(app):
    """A JWT access token for the admin user, from FAB's login API."""
    resp = app.test_client().post("/api/v1/security/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD, "provider": "db"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["access_token"]


# --- no silent skips ----------------------------------------------------------------
# A test marked ``postgres_only`` is skipped on SQLite (it runs in CI's PostgreSQL pass);
# any other skip fails the run, so nothing is skipped silently.

def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("postgres_only") and BACKEND != "postgresql":
            item.add_marker(pytest.mark.skip(reason="postgres_only: runs in the PostgreSQL pass"))


_unexpected_skips: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and "postgres_only" not in str(report.longrepr):
        _unexpected_skips.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _unexpected_skips and exitstatus == 0:
        session.exitstatus = 1
        print("\nThese tests were skipped; a skip is not a pass:\n  " + "\n  ".join(_unexpected_skips))
