"""The ``crmkit`` command line. Configuration comes from CRMKIT_* environment variables."""
from __future__ import annotations

import json
import os
import secrets
import sys
from typing import NoReturn
from pathlib import Path

import click

from .config import MIN_SECRET_KEY_LENGTH, ConfigError, Settings


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        _fail(str(exc))


def _app(settings: Settings | None = None):
    from .web.app import create_app

    settings = settings or _settings()
    if not settings.secret_key or len(settings.secret_key) < MIN_SECRET_KEY_LENGTH:
        # Commands that never serve requests still need Flask-AppBuilder; they never issue cookies.
        # (`crmkit run` checks the configured key before it gets here.)
        settings = Settings(**{**settings.__dict__, "secret_key": secrets.token_hex(32)})
    return create_app(settings)


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(click.style("Error: ", fg="red", bold=True) + message, err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """crmkit: a metadata-driven, low-code CRM platform.

    Configure with environment variables: CRMKIT_DATABASE_URL (default: SQLite
    under var/), CRMKIT_SECRET_KEY (required to serve), CRMKIT_REDIS_URL.
    """


@main.command()
def init():
    """Create or upgrade the platform's tables (idempotent)."""
    from .services import Services
    from .storage.migrate import upgrade_platform

    settings = _settings()
    services = Services.build(settings)
    upgrade_platform(services.engine)
    services.engine.dispose()
    app = _app(settings)  # creates Flask-AppBuilder's user and role tables
    with app.app_context():
        from .web.permissions import sync_entity_permissions

        sync_entity_permissions(app, app.extensions["crmkit"])
    click.echo(f"Database ready: {_safe_url(settings.database_url)}")


@main.command("create-admin")
@click.option("--username", default="admin", show_default=True)
@click.option("--email", default="admin@example.com", show_default=True)
@click.option("--password", default=None, help="Generated and printed when omitted.")
@click.option("--first-name", default="Admin", show_default=True)
@click.option("--last-name", default="User", show_default=True)
@click.option("--if-missing", is_flag=True, help="Do nothing when the user already exists.")
def create_admin(username, email, password, first_name, last_name, if_missing):
    """Create an administrator account."""
    app = _app()
    with app.app_context():
        sm = app.appbuilder.sm
        if sm.find_user(username=username) is not None:
            if if_missing:
                click.echo(f"Admin user '{username}' already exists.")
                return
            _fail(f"A user named '{username}' already exists; choose another --username.")
        password = password or secrets.token_urlsafe(12)
        role = sm.find_role(app.config["AUTH_ROLE_ADMIN"])
        from .auth.passwords import WeakPassword

        try:
            user = sm.add_user(username, first_name, last_name, email, role, password)
        except WeakPassword as exc:
            _fail(f"{exc.message.en} (--password)")
        if not user:
            _fail("The admin user could not be created (is the email already used?).")
    click.echo("Admin account created:")
    click.echo(f"  username: {username}")
    click.echo(f"  password: {password}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--debug", is_flag=True, help="Reload on code changes; never in production.")
@click.option("--with-worker", is_flag=True, help="Also start `crmkit worker` as a child process (the local demo's one command).")
def run(host, port, debug, with_worker):
    """Serve the web UI and API (development server; use gunicorn in production, see docs/operations.md)."""
    settings = _settings()
    try:
        settings.require_secret_key()
    except ConfigError as exc:
        _fail(str(exc))
    app = _app(settings)
    if with_worker and not os.environ.get("WERKZEUG_RUN_MAIN"):  # the reloader's child must not start a second worker
        _start_worker_child()
    click.echo(f"crmkit serving on http://{host}:{port}/ (database: {_safe_url(settings.database_url)})")
    app.run(host=host, port=port, debug=debug, threaded=True, use_reloader=debug)


@main.group()
def apps():
    """List and install app templates."""


@apps.command("list")
def apps_list():
    """Show the available app templates and which are installed."""
    from .installer import installed_apps
    from .packages import discover

    app = _app()
    with app.app_context():
        installed = installed_apps(app.extensions["crmkit"])
    for app_id, pkg in discover().items():
        manifest = json.loads((pkg.path / "app.json").read_text("utf-8"))
        state = f"installed {installed[app_id]}" if app_id in installed else "available"
        click.echo(f"{app_id:<14} {manifest['version']:<8} {state:<18} {manifest['title']['en']} / {manifest['title']['zh']}")


@apps.command("install")
@click.argument("name")
@click.option("--demo", is_flag=True, help="Also create demo records.")
@click.option("--demo-size", default=2000, show_default=True, help="How many demo members/records to create.")
@click.option("--yes", is_flag=True, help="Confirm destructive or lossy schema steps.")
def apps_install(name, demo, demo_size, yes):
    """Install an app template: validate → plan → migrate → seed."""
    from .errors import CrmkitError
    from .installer import install
    from .web.permissions import sync_entity_permissions

    app = _app()
    with app.app_context():
        services = app.extensions["crmkit"]
        try:
            report = install(services, name, demo=demo, confirm=yes, demo_size=demo_size, progress=click.echo)
        except CrmkitError as exc:
            _fail(exc.message)
        sync_entity_permissions(app, services)
    click.echo(f"Installed {name}" + (f" with {report.seeded} demo records" if demo else "") + ".")


@main.group()
def schema():
    """Compare the database with the definitions, and apply the difference."""


def _plan(app):
    from .storage.plan import Planner

    services = app.extensions["crmkit"]
    return services, Planner(services.engine, services.store.catalog()).plan()


@schema.command("plan")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def schema_plan(as_json):
    """Show what `schema apply` would do, with affected row counts for risky steps."""
    app = _app()
    with app.app_context():
        _, plan = _plan(app)
    click.echo(json.dumps(plan.to_dict(), ensure_ascii=False, indent=2) if as_json else plan.render())


@schema.command("apply")
@click.option("--yes", is_flag=True, help="Confirm destructive or lossy steps.")
def schema_apply(yes):
    """Apply the plan. Destructive or lossy steps need --yes."""
    from .errors import PlanRefused
    from .storage.plan import apply_plan

    app = _app()
    with app.app_context():
        services, plan = _plan(app)
        click.echo(plan.render())
        if plan.empty:
            return
        try:
            n = apply_plan(services.engine, plan, confirm=yes)
        except PlanRefused as exc:
            _fail(exc.message + "\nRun `crmkit schema apply --yes` to apply anyway.", code=2)
    click.echo(f"Applied {n} steps.")


@main.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=str))
def backup_cmd(path):
    """Write a consistent backup of the database to PATH (plus PATH.manifest.json), while the app runs."""
    from .backup import BackupError, backup
    from .db import make_engine

    engine = make_engine(_settings().database_url)
    try:
        manifest = backup(engine, Path(path))
    except BackupError as exc:
        _fail(exc.message)
    finally:
        engine.dispose()
    click.echo(f"Backed up {manifest['rows']} rows in {len(manifest['tables'])} tables to {path} "
               f"({manifest['bytes']:,} bytes; manifest {path}.manifest.json).")


@main.command("restore")
@click.argument("path", type=click.Path(dir_okay=False, path_type=str))
@click.option("--yes", is_flag=True, help="Confirm replacing a database that already holds data.")
def restore_cmd(path, yes):
    """Replace the database with the backup at PATH, then check row counts and the audit chain.

    Stop the web and worker processes first.
    """
    from .backup import BackupError, restore
    from .db import make_engine

    engine = make_engine(_settings().database_url)
    try:
        report = restore(engine, Path(path), overwrite=yes)
    except BackupError as exc:
        _fail(exc.message, code=2)
    finally:
        engine.dispose()
    for table, (expected, found) in report.mismatches.items():
        click.echo(f"  {table}: expected {expected} rows, found {found}", err=True)
    if not report.ok:
        _fail(f"The restored database does not match the backup's manifest ({len(report.mismatches)} table(s) differ; "
              f"audit chain {'intact' if report.audit_ok else f'broken in {report.audit_problems} place(s)'}).")
    click.echo(f"Restored {report.rows} rows in {report.tables} tables; every count matches the manifest and the audit chain verifies.")
@main.command("import")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--entity", help="The entity to import into, e.g. membership.member.")
@click.option("--mode", type=click.Choice(["insert", "update", "upsert"]), default="insert", show_default=True)
@click.option("--key", default=None, help="Unique field that matches rows to records (mobile, id_number, card_no).")
@click.option("--mapping", "mapping_file", type=click.Path(exists=True, dir_okay=False), help="JSON file: {column header: field name}.")
@click.option("--sheet", default=None, help="XLSX sheet name (default: the first).")
@click.option("--batch-size", default=1000, show_default=True, type=int)
@click.option("--user", "username", default="admin", show_default=True, help="Import as this user (their permissions apply).")
@click.option("--dry-run", is_flag=True, help="Validate everything and report; write nothing.")
@click.option("--resume", "resume_id", type=int, default=None, help="Continue an interrupted run after its checkpoint.")
def import_file(file, entity, mode, key, mapping_file, sheet, batch_size, username, dry_run, resume_id):
    """Import a CSV or XLSX file, in batches, resumable after a crash."""
    from .imports.cli import import_command

    try:
        import_command(_settings(), file=file, entity=entity, mode=mode, key=key, mapping_file=mapping_file, sheet=sheet,
                       batch_size=batch_size, username=username, dry_run=dry_run, resume_id=resume_id, echo=click.echo)
    except Exception as exc:  # noqa: BLE001 - shown as a clear error line, not a traceback
        from .errors import CrmkitError

        if not isinstance(exc, CrmkitError):
            raise
        details = getattr(exc, "field_errors", None)
        _fail(str(exc.message) + (f" {json.dumps({k: [str(m) for m in v] for k, v in details.items()}, ensure_ascii=False)}" if details else ""))


@main.group()
def audit():
    """Verify and purge the hash-chained audit log."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def audit_verify(as_json):
    """Recompute the audit chain; exit status 1 names every modified, missing or reordered entry."""
    from .audit import seal_now
    from .audit.verify import verify_chain
    from .db import make_engine, read_transaction

    engine = make_engine(_settings().database_url)
    seal_now(engine)  # chain what was written moments ago, so it is checked too
    with read_transaction(engine) as conn:
        report = verify_chain(conn)
    engine.dispose()
    if as_json:
        click.echo(json.dumps({"ok": report.ok, "checked": report.checked, "pending": report.pending, "first_seq": report.first_seq, "last_seq": report.last_seq,
                               "problems": [{"seq": p.seq, "id": p.entry_id, "message": p.message} for p in report.problems]}, indent=2))
    elif report.ok:
        click.echo(f"Audit chain intact: {report.checked} entries checked (#{report.first_seq}..#{report.last_seq or report.first_seq - 1}).")
    else:
        for p in report.problems:
            click.echo(f"  {p}", err=True)
    if not report.ok:
        _fail(f"The audit chain is broken: {len(report.problems)} problem(s) in {report.checked} entries checked. "
              "Restore the audit table from a backup and investigate who changed it.")


@audit.command("purge")
@click.option("--days", type=int, default=None, help="Keep this many days (default: CRMKIT_AUDIT_RETENTION_DAYS, 180).")
def audit_purge(days):
    """Delete audit entries older than the retention period, keeping the chain verifiable."""
    from .audit.retention import MIN_RETENTION_DAYS, purge_before, retention_cutoff
    from .db import make_engine

    settings = _settings()
    days = settings.audit_retention_days if days is None else days
    if days < 1 or (days < MIN_RETENTION_DAYS and not settings.debug):
        _fail(f"--days must be at least {MIN_RETENTION_DAYS} (six months); shorter periods need CRMKIT_DEBUG=1.")
    engine = make_engine(settings.database_url)
    result = purge_before(engine, retention_cutoff(days))
    engine.dispose()
    click.echo(f"Purged {result.deleted} audit entries older than {days} days (before {result.cutoff:%Y-%m-%d %H:%M} UTC); "
               f"the chain now starts after entry #{result.anchor_seq}.")


@main.command()
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Worker threads in this process.")
@click.option("--once", is_flag=True, help="Run the due jobs and pending events once, then exit.")
@click.option("--parent-pid", type=int, default=None, hidden=True, help="Stop when this process is gone (`crmkit run --with-worker`).")
@click.pass_context
def worker(ctx, workers, once, parent_pid):
    """Run background jobs, the outbox dispatcher and periodic jobs (see docs/operations.md, "Workers")."""
    from .jobs.worker import run_worker
    from .services import Services

    settings = _settings()
    services = Services.build(settings)
    for hook in (ctx.obj or {}).get("job_kinds", ()):  # extra job kinds from an embedding program (tests)
        hook(services.jobs.registry)
    if once:
        services.jobs.reap()
        ran = services.jobs.work_once()
        delivered = services.background.outbox.dispatch()
        click.echo(f"Ran {ran} job(s); dispatched {delivered or 0} event(s).")
        return
    queue = "Redis" if settings.redis_url else f"SQLite file {settings.huey_file}"
    click.echo(f"crmkit worker: {workers} thread(s), queue in {queue}, database {_safe_url(settings.database_url)}")
    run_worker(services, workers=workers, parent_pid=parent_pid)


def _start_worker_child() -> None:
    """`crmkit worker` as a child process that stops with the server (no signal handling is shared with Flask)."""
    import atexit
    import subprocess

    import signal

    child = subprocess.Popen([sys.executable, "-m", "crmkit.runtime.cli", "worker", "--workers", "2", "--parent-pid", str(os.getpid())])
    click.echo(f"crmkit worker started as child process {child.pid}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run the atexit hook below on `kill` too

    def stop():
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()

    atexit.register(stop)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    main()


def _register_builder_commands() -> None:
    from crmkit.builder.cli import config, template

    main.add_command(config)
    main.add_command(template)


_register_builder_commands()
