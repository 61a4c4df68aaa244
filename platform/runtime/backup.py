"""Backup and restore of the whole database, with a manifest that a restore is checked against.

- SQLite: the online backup API copies a consistent snapshot while the app keeps running (WAL).
- PostgreSQL: ``pg_dump -Fc`` under a snapshot exported from the transaction that counted the rows,
  so the manifest's counts describe exactly what the dump holds, even under concurrent writes.

A backup is a file plus ``<file>.manifest.json`` (when, which database kind, the migration revision,
the metadata stamp, the row count of every table and the file's SHA-256). ``restore`` refuses a file
whose checksum does not match, refuses to overwrite a database holding data unless confirmed, and
afterwards compares every table's row count with the manifest and verifies the audit chain.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, MetaData, func, select, text
from sqlalchemy.engine import make_url

from .errors import CrmkitError

MANIFEST_SUFFIX = ".manifest.json"
FORMAT = 1


class BackupError(CrmkitError):
    code = "backup_failed"
    status = 500


@dataclass
class RestoreReport:
    tables: int
    rows: int
    mismatches: dict[str, tuple[int, int]] = field(default_factory=dict)  # table → (expected, found)
    audit_ok: bool = True
    audit_problems: int = 0

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.audit_ok


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


def table_counts(conn) -> dict[str, int]:
    md = MetaData()
    md.reflect(conn)
    return {name: conn.execute(select(func.count()).select_from(t)).scalar_one() for name, t in sorted(md.tables.items())}


def _stamps(conn) -> dict:
    out = {}
    for key, sql in (("alembic_revision", "SELECT version_num FROM crmkit_alembic_version"),
                     ("meta_stamp", "SELECT version FROM crmkit_meta_stamp WHERE id = 1")):
        try:
            out[key] = conn.execute(text(sql)).scalar()
        except Exception:  # an uninitialised database has neither table
            conn.rollback()
            out[key] = None
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _libpq_url(engine: Engine) -> str:
    return make_url(engine.url).set(drivername="postgresql").render_as_string(hide_password=False)


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise BackupError(f"{tool} was not found on PATH. Install the PostgreSQL client tools of the server's major version "
                          f"(Debian: apt-get install postgresql-client) and run the command again.")
    return found


def backup(engine: Engine, path: Path) -> dict:
    """Write a backup of the database behind ``engine`` to ``path`` and its manifest; returns the manifest."""
    path = Path(path)
    if path.exists():
        raise BackupError(f"{path} already exists; choose a new file name (backups are never overwritten).")
    path.parent.mkdir(parents=True, exist_ok=True)
    if engine.dialect.name == "sqlite":
        counts, stamps = _backup_sqlite(engine, path)
    elif engine.dialect.name == "postgresql":
        counts, stamps = _backup_postgres(engine, path)
    else:
        raise BackupError(f"Backups of {engine.dialect.name} databases are not supported.")
    manifest = {"format": FORMAT, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(), "database": engine.dialect.name,
                **stamps, "tables": counts, "rows": sum(counts.values()), "sha256": _sha256(path), "bytes": path.stat().st_size}
    manifest_path(path).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def _backup_sqlite(engine: Engine, path: Path):
    source = engine.raw_connection()
    try:
        target = sqlite3.connect(path)
        try:
            source.driver_connection.backup(target)  # type: ignore[union-attr]  # SQLAlchemy types the DBAPI connection Optional
        finally:
            target.close()
    finally:
        source.close()
    copy = sqlite3.connect(path)
    try:
        if copy.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise BackupError(f"The copy in {path} failed SQLite's integrity check; the source database may be damaged.")
    finally:
        copy.close()
    from sqlalchemy import create_engine

    copy_engine = create_engine(f"sqlite:///{path}")
    try:
        with copy_engine.connect() as conn:
            return table_counts(conn), _stamps(conn)
    finally:
        copy_engine.dispose()


def _backup_postgres(engine: Engine, path: Path):
    pg_dump = _require("pg_dump")
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        with conn.begin():
            snapshot: str = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            counts, stamps = table_counts(conn), _stamps(conn)
            # The snapshot lives as long as this transaction: pg_dump sees exactly what was counted.
            result = subprocess.run([pg_dump, "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot}",
                                     f"--file={path}", f"--dbname={_libpq_url(engine)}"], capture_output=True, text=True)
    if result.returncode != 0:
        path.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {result.stderr.strip()[:500]}")
    return counts, stamps


def read_manifest(path: Path) -> dict:
    mpath = manifest_path(Path(path))
    if not Path(path).is_file():
        raise BackupError(f"There is no backup file at {path}.")
    if not mpath.is_file():
        raise BackupError(f"{mpath} is missing; a backup is restored only together with its manifest.")
    manifest = json.loads(mpath.read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{mpath} has format {manifest.get('format')!r}; this version reads format {FORMAT}.")
    if _sha256(Path(path)) != manifest["sha256"]:
        raise BackupError(f"{path} does not match the checksum in its manifest: the file is damaged or was changed.")
    return manifest


def holds_data(engine: Engine) -> bool:
    with engine.connect() as conn:
        return any(n > 0 for n in table_counts(conn).values())


def restore(engine: Engine, path: Path, *, overwrite: bool = False) -> RestoreReport:
    """Replace the database behind ``engine`` with the backup at ``path``, then check it against the manifest.

    Stop the web and worker processes first: a restore replaces every table under them.
    """
    path = Path(path)
    manifest = read_manifest(path)
    if manifest["database"] != engine.dialect.name:
        raise BackupError(f"This is a {manifest['database']} backup; the configured database is {engine.dialect.name}. "
                          "Restore it into a database of the same kind.")
    if not overwrite and holds_data(engine):
        raise BackupError("The target database already holds data. Restoring replaces all of it; "
                          "run again with --yes to confirm.")
    if engine.dialect.name == "sqlite":
        _restore_sqlite(engine, path)
    else:
        _restore_postgres(engine, path)
    engine.dispose()
    return check_restored(engine, manifest)


def _restore_sqlite(engine: Engine, path: Path) -> None:
    engine.dispose()  # no pooled connection may hold the file while it is replaced
    source = sqlite3.connect(path)
    target = engine.raw_connection()
    try:
        source.backup(target.driver_connection)  # type: ignore[arg-type]  # SQLAlchemy types the DBAPI connection Optional
    finally:
        target.close()
        source.close()


def _restore_postgres(engine: Engine, path: Path) -> None:
    pg_restore = _require("pg_restore")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # Start from an empty schema, so tables created after the backup do not survive the restore.
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    result = subprocess.run([pg_restore, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
                             f"--dbname={_libpq_url(engine)}", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed: {result.stderr.strip()[:500]}")


def check_restored(engine: Engine, manifest: dict) -> RestoreReport:
    from .audit.verify import verify_chain
    from .db import read_transaction

    with engine.connect() as conn:
        found = table_counts(conn)
    expected = manifest["tables"]
    mismatches = {t: (expected.get(t, 0), found.get(t, 0)) for t in sorted(set(expected) | set(found))
                  if expected.get(t, 0) != found.get(t, 0)}
    report = RestoreReport(tables=len(found), rows=sum(found.values()), mismatches=mismatches)
    if "crmkit_audit" in found:
        with read_transaction(engine) as conn:
            chain = verify_chain(conn)
        report.audit_ok, report.audit_problems = chain.ok, len(chain.problems)
    return report
