"""The crmkit console script: init, create-admin, apps, schema, worker, and --help everywhere."""
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

from crmkit.runtime.cli import main

COMMANDS = [[], ["init"], ["run"], ["create-admin"], ["apps"], ["apps", "list"], ["apps", "install"],
            ["schema"], ["schema", "plan"], ["schema", "apply"], ["worker"], ["backup"], ["restore"]]


@pytest.fixture
def cli_env(empty_database_url, tmp_path):
    return {"CRMKIT_DATABASE_URL": empty_database_url, "CRMKIT_VAR_DIR": str(tmp_path / "var"), "CRMKIT_SECRET_KEY": "cli-test-secret"}


def invoke(args, env):
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    return result


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "crmkit")
def test_every_command_has_help(args):
    result = CliRunner().invoke(main, args + ["--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
    assert len(result.output.splitlines()) >= 3


def test_init_install_plan_and_admin_from_an_empty_database(cli_env):
    r = invoke(["init"], cli_env)
    assert r.exit_code == 0, r.output
    engine = create_engine(cli_env["CRMKIT_DATABASE_URL"])
    tables = set(inspect(engine).get_table_names())
    assert {"crmkit_document", "crmkit_audit", "crmkit_outbox", "crmkit_sequence", "ab_user", "ab_role"} <= tables

    r = invoke(["apps", "list"], cli_env)
    assert "membership" in r.output and "available" in r.output

    r = invoke(["apps", "install", "membership", "--demo", "--demo-size", "15"], cli_env)
    assert r.exit_code == 0, r.output
    assert "Create table membership_member" in r.output
    with engine.connect() as c:
        # 15 demo members, plus the members of the approved demo join applications
        joined = c.execute(text("SELECT count(*) FROM membership_application WHERE workflow_state = 'approved'")).scalar_one()
        assert joined > 0
        assert c.execute(text("SELECT count(*) FROM membership_member")).scalar_one() == 15 + joined
        assert c.execute(text("SELECT count(*) FROM membership_level")).scalar_one() == 4
        # demo data went through the record service: one audit entry per record
        assert c.execute(text("SELECT count(*) FROM crmkit_audit WHERE entity = 'membership.member' AND action = 'create'")).scalar_one() == 15 + joined
    assert "installed" in invoke(["apps", "list"], cli_env).output

    r = invoke(["schema", "plan"], cli_env)
    assert "nothing to do" in r.output
    plan = json.loads(invoke(["schema", "plan", "--json"], cli_env).output)
    assert plan == {"steps": [], "needs_confirmation": False}

    r = invoke(["create-admin", "--username", "boss"], cli_env)
    assert r.exit_code == 0
    assert "username: boss" in r.output and "password: " in r.output
    r = CliRunner().invoke(main, ["create-admin", "--username", "boss"], env=cli_env)
    assert r.exit_code == 1 and "already exists" in r.output
    assert invoke(["create-admin", "--username", "boss", "--if-missing"], cli_env).exit_code == 0
    engine.dispose()


def test_install_unknown_app_fails_clearly(cli_env):
    invoke(["init"], cli_env)
    r = CliRunner().invoke(main, ["apps", "install", "nope"], env=cli_env)
    assert r.exit_code == 1
    assert "There is no app named 'nope'" in r.output


def test_run_refuses_to_start_without_a_secret_key(cli_env):
    env = {**cli_env, "CRMKIT_SECRET_KEY": ""}
    r = CliRunner().invoke(main, ["run"], env=env)
    assert r.exit_code == 1
    assert "CRMKIT_SECRET_KEY is not set" in r.output


def test_worker_once_runs_due_jobs_and_exits(cli_env):
    assert invoke(["init"], cli_env).exit_code == 0
    r = invoke(["worker", "--once"], cli_env)
    assert r.exit_code == 0 and "Ran 0 job(s); dispatched 0 event(s)." in r.output
