"""``crmkit import``: the import engine run synchronously with a progress line (admins, scripts, crash tests)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..errors import ValidationFailed
from .actor import actor_by_username
from .engine import ImportEngine


def import_command(settings, *, file, entity, mode, key, mapping_file, sheet, batch_size, username, dry_run, resume_id, echo) -> None:
    from ..services import Services

    services = Services.build(settings)
    try:
        engine = ImportEngine(services)
        actor = actor_by_username(services.engine, username)
        if resume_id is not None:
            run_id = resume_id
            echo(f"Resuming import #{run_id} after row {engine.run_info(run_id)['checkpoint']}")
        else:
            if not file or not entity:
                raise ValidationFailed({"file": ["Give a FILE and --entity (or --resume RUN_ID)."]})
            mapping = json.loads(Path(mapping_file).read_text("utf-8")) if mapping_file else None
            run_id = engine.create_run(Path(file).resolve(), entity, actor, mapping=mapping, mode=mode, key=key, sheet=sheet, batch_size=batch_size)
            echo(f"Import #{run_id}: {file} → {entity} ({mode}{', key ' + key if key else ''}){' [dry run]' if dry_run else ''}")
        started = time.monotonic()
        tty = sys.stderr.isatty()

        def progress(done, total, _message=None):
            rate = done / max(time.monotonic() - started, 1e-6)
            line = f"  {done}/{total} rows ({rate:,.0f} rows/s)"
            print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

        summary = engine.run(run_id, actor, progress=progress, dry_run=dry_run)
        if tty:
            print(file=sys.stderr)
        echo(json.dumps(summary.to_json(), ensure_ascii=False))
        for p in summary.problems[:50]:
            echo(f"  row {p.row} [{p.kind}]: " + "; ".join(f"{m['column']}: {m['message']['en']}" for m in p.messages))
    finally:
        services.engine.dispose()
