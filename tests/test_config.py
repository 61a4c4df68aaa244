"""Settings come only from CRMKIT_* variables, and a bad value is a clear error, never a default in disguise."""
import pytest
from click.testing import CliRunner

from crmkit.runtime.cli import main
from crmkit.runtime.config import ConfigError, Settings


def test_settings_read_every_documented_variable(tmp_path):
    s = Settings.from_env({
        "CRMKIT_DATABASE_URL": "postgresql+psycopg://u@h:5432/db", "CRMKIT_SECRET_KEY": "k" * 32,
        "CRMKIT_REDIS_URL": "redis://127.0.0.1:6379/1", "CRMKIT_VAR_DIR": str(tmp_path), "CRMKIT_TIMEZONE": "Europe/Berlin",
        "CRMKIT_LOCALE": "en", "CRMKIT_MAX_UPLOAD_BYTES": "2048", "CRMKIT_JWT_EXPIRES_SECONDS": "600", "CRMKIT_DEBUG": "yes",
    })
    assert (s.database_url, s.secret_key, s.redis_url) == ("postgresql+psycopg://u@h:5432/db", "k" * 32, "redis://127.0.0.1:6379/1")
    assert (s.var_dir, s.timezone, s.default_locale) == (tmp_path, "Europe/Berlin", "en")
    assert (s.max_upload_bytes, s.jwt_expires_seconds, s.debug) == (2048, 600, True)


def test_defaults_put_sqlite_under_the_var_dir(tmp_path):
    s = Settings.from_env({"CRMKIT_VAR_DIR": str(tmp_path)})
    assert s.database_url == f"sqlite:///{(tmp_path / 'crmkit.db').resolve()}"
    assert s.secret_key is None and s.redis_url is None and s.debug is False


@pytest.mark.parametrize("name, value", [("CRMKIT_MAX_UPLOAD_BYTES", "ten"), ("CRMKIT_JWT_EXPIRES_SECONDS", "-5")])
def test_a_bad_number_names_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_the_cli_reports_a_bad_setting_without_a_traceback(tmp_path):
    r = CliRunner().invoke(main, ["schema", "plan"], env={"CRMKIT_JWT_EXPIRES_SECONDS": "soon", "CRMKIT_VAR_DIR": str(tmp_path)})
    assert r.exit_code == 1
    assert "CRMKIT_JWT_EXPIRES_SECONDS must be a whole number" in r.output
    assert "Traceback" not in r.output


def test_a_server_needs_a_secret_key_unless_debugging():
    with pytest.raises(ConfigError, match="CRMKIT_SECRET_KEY is not set"):
        Settings(database_url="sqlite://").require_secret_key()
    assert Settings(database_url="sqlite://", debug=True).require_secret_key()
    with pytest.raises(ConfigError, match="too short"):  # production needs >= 32 characters (docs/security.md)
        Settings(database_url="sqlite://", secret_key="s3cret").require_secret_key()
    assert Settings(database_url="sqlite://", secret_key="s3cret", debug=True).require_secret_key() == "s3cret"
    assert Settings(database_url="sqlite://", secret_key="s" * 32).require_secret_key() == "s" * 32
