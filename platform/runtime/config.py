"""Settings from ``CRMKIT_*`` environment variables.

One immutable object, built once per process and passed explicitly; nothing
reads the environment after start-up.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ENV_PREFIX = "CRMKIT_"


class ConfigError(RuntimeError):
    """The configuration cannot run the product; the message says what to set."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    secret_key: str | None = None
    redis_url: str | None = None
    var_dir: Path = Path("var")
    debug: bool = False
    timezone: str = "Asia/Shanghai"
    default_locale: str = "zh"
    max_upload_bytes: int = 10 * 1024 * 1024
    jwt_expires_seconds: int = 3600
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        var_dir = Path(env.get(ENV_PREFIX + "VAR_DIR", "var"))
        default_db = f"sqlite:///{(var_dir / 'crmkit.db').resolve()}"
        return cls(
            database_url=env.get(ENV_PREFIX + "DATABASE_URL", default_db),
            secret_key=env.get(ENV_PREFIX + "SECRET_KEY") or None,
            redis_url=env.get(ENV_PREFIX + "REDIS_URL") or None,
            var_dir=var_dir,
            debug=env.get(ENV_PREFIX + "DEBUG", "").lower() in {"1", "true", "yes", "on"},
            timezone=env.get(ENV_PREFIX + "TIMEZONE", "Asia/Shanghai"),
            default_locale=env.get(ENV_PREFIX + "LOCALE", "zh"),
            max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", 10 * 1024 * 1024),
            jwt_expires_seconds=_int(env, "JWT_EXPIRES_SECONDS", 3600),
        )

    def require_secret_key(self) -> str:
        """A server without debug refuses to start without a configured secret."""
        if self.secret_key:
            return self.secret_key
        if self.debug:
            return "crmkit-debug-only-secret"
        raise ConfigError(
            "CRMKIT_SECRET_KEY is not set. Set it to a long random value, e.g. "
            "`export CRMKIT_SECRET_KEY=$(python -c 'import secrets;print(secrets.token_hex(32))')`."
        )

    @property
    def upload_dir(self) -> Path:
        return self.var_dir / "files"


def _int(env, name: str, default: int) -> int:
    raw = env.get(ENV_PREFIX + name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name} must be a whole number, not {raw!r}.") from None
    if value <= 0:
        raise ConfigError(f"{ENV_PREFIX}{name} must be positive, not {value}.")
    return value
