"""What a figure was measured on: cores, memory, database version, git commit."""
from __future__ import annotations

import os
import platform as stdlib_platform
import subprocess

from sqlalchemy import Engine, text


def describe(engine: Engine) -> dict:
    with engine.connect() as c:
        if engine.dialect.name == "postgresql":
            version = c.execute(text("SHOW server_version")).scalar_one()
            db = f"PostgreSQL {version}"
        else:
            db = f"SQLite {c.execute(text('select sqlite_version()')).scalar_one()}"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {"cores": os.cpu_count(), "memory_gib": mem_gib, "database": db, "python": stdlib_platform.python_version(),
            "commit": commit, "cpu": _cpu_model()}


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return stdlib_platform.processor() or "unknown"
