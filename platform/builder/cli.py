"""``crmkit config export|import`` and ``crmkit template upgrade``: the builder's command-line side."""
from __future__ import annotations

import json
from pathlib import Path

import click


def _app():
    from crmkit.runtime.cli import _app as runtime_app

    return runtime_app()


def _fail(message: str, code: int = 1):
    from crmkit.runtime.cli import _fail as runtime_fail

    runtime_fail(message, code)


@click.group()
def config():
    """Export the whole configuration to JSON files, or import it back."""


@config.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def config_export(directory: Path):
    """Write every definition to DIRECTORY as sorted, pretty JSON (one file per definition)."""
    from .config_io import export_folder

    app = _app()
    with app.app_context():
        files = export_folder(app.extensions["crmkit"], directory)
    click.echo(f"Wrote {len(files)} files to {directory}")


@config.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Confirm steps that delete or convert data.")
@click.option("--dry-run", is_flag=True, help="Only show the plan.")
def config_import(directory: Path, yes: bool, dry_run: bool):
    """Validate, plan and apply the definitions in DIRECTORY."""
    from crmkit.runtime.errors import DefinitionError, PlanRefused

    from .config_io import import_documents, read_folder

    app = _app()
    with app.app_context():
        services = app.extensions["crmkit"]
        try:
            result = import_documents(services, read_folder(directory), confirm=yes, dry_run=dry_run)
        except DefinitionError as exc:
            _fail(exc.message)
        except PlanRefused as exc:
            _fail(exc.message + "\nRun `crmkit config import DIR --yes` to apply anyway.", code=2)
        from crmkit.runtime.web.permissions import sync_entity_permissions

        if result.applied:
            sync_entity_permissions(app, services)
    click.echo(result.plan.render())
    click.echo(("Would change" if dry_run else "Changed") + f" {len(result.changed)} definitions: " + ", ".join(result.changed))


@click.group()
def template():
    """Upgrade an installed template, keeping local changes (three-way merge)."""


@template.command("upgrade")
@click.argument("app_id")
@click.option("--from", "folder", type=click.Path(exists=True, file_okay=False, path_type=Path), help="The new template folder (default: the packaged app).")
@click.option("--take", type=click.Choice(["local", "theirs"]), help="Decide every conflict this way.")
@click.option("--decide", multiple=True, help="CONFLICT_ID=local|theirs for one conflict (repeatable).")
@click.option("--yes", is_flag=True, help="Confirm steps that delete or convert data.")
@click.option("--dry-run", is_flag=True, help="Only list conflicts and the plan.")
def template_upgrade(app_id, folder, take, decide, yes, dry_run):
    """Merge the new version of APP_ID with the local definitions; conflicts are listed for a decision."""
    from crmkit.runtime.errors import DefinitionError, PlanRefused
    from crmkit.runtime.packages import get_package

    from .upgrade import UnresolvedConflicts, apply_upgrade, plan_upgrade

    folder = folder or get_package(app_id).path
    decisions = dict(d.split("=", 1) for d in decide if "=" in d)
    app = _app()
    with app.app_context():
        services = app.extensions["crmkit"]
        if dry_run:
            plan = plan_upgrade(services, app_id, folder, decisions, take)
            click.echo(f"{app_id}: {plan.from_version or '?'} -> {plan.to_version}; local changes kept in: {', '.join(plan.local_changes) or 'none'}")
            for c in plan.conflicts:
                click.echo(f"CONFLICT {c.id}\n  installed: {json.dumps(c.to_dict()['base'], ensure_ascii=False)}\n"
                           f"  yours:     {json.dumps(c.to_dict()['local'], ensure_ascii=False)}\n  template:  {json.dumps(c.to_dict()['theirs'], ensure_ascii=False)}")
            return
        try:
            plan = apply_upgrade(services, app_id, folder, decisions=decisions, default=take, confirm=yes)
        except UnresolvedConflicts as exc:
            lines = [f"CONFLICT {c['id']}: yours={json.dumps(c['local'], ensure_ascii=False)} template={json.dumps(c['theirs'], ensure_ascii=False)}"
                     for c in exc.details["conflicts"]]
            _fail(exc.message + "\n" + "\n".join(lines) + "\nDecide with --take local|theirs or --decide ID=local|theirs.", code=3)
        except (DefinitionError, PlanRefused) as exc:
            _fail(exc.message, code=2)
    click.echo(f"Upgraded {app_id} to {plan.to_version}; local changes kept in: {', '.join(plan.local_changes) or 'none'}")
