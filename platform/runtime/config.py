"""Settings from ``CRMKIT_*`` environment variables.

One immutable object, built once per process and passed explicitly; nothing
reads the environment after start-up.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ENV_PREFIX = "CRMKIT_"
MIN_SECRET_KEY_LENGTH = 32
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


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
    audit_retention_days: int = 180
    # Authentication hardening (docs/security.md). ``secure_cookies=None`` means "Secure unless debug".
    secure_cookies: bool | None = None
    session_lifetime_seconds: int = 12 * 3600
    session_idle_seconds: int = 30 * 60
    login_rate_limit: str = "10 per minute"
    login_lockout_threshold: int = 5
    login_lockout_seconds: int = 15 * 60
    api_key_max_days: int = 365
    # How many reverse proxies sit in front and set X-Forwarded-For/-Proto/-Host (0: trust none).
    trusted_proxies: int = 0
    # Flask-AppBuilder writes the permission rows of its own views when an app starts (~190 queries). An app built on
    # a copy of a database that already has them (the test suite's template databases) may skip that.
    framework_permissions_on_start: bool = True
    # Background jobs and messaging (docs/operations.md "Workers").
    job_lease_seconds: int = 60
    job_max_attempts: int = 5
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "crmkit@localhost"
    smtp_starttls: bool = False
    sms_url: str | None = None
    sms_key: str | None = None
    wechat_url: str | None = None
    wechat_key: str | None = None
    message_rate_per_minute: int = 60
    # Inbound email (the service template's mailbox poller; docs/operations.md "Inbound email").
    imap_host: str | None = None
    imap_port: int | None = None  # default by security: 993 ssl, 143 starttls / plain
    imap_user: str | None = None
    imap_password: str | None = None
    imap_security: str = "ssl"  # ssl | starttls | plain (plain only for a local server)
    imap_folder: str = "INBOX"
    # The site's public address (CRMKIT_BASE_URL, e.g. https://crm.example.cn), for absolute links in messages.
    base_url: str | None = None
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
            audit_retention_days=_retention_days(env),
            secure_cookies=_optional_bool(env, "SECURE_COOKIES"),
            session_lifetime_seconds=_int(env, "SESSION_LIFETIME_SECONDS", 12 * 3600),
            session_idle_seconds=_int(env, "SESSION_IDLE_SECONDS", 30 * 60),
            login_rate_limit=_rate_limit(env, "LOGIN_RATE_LIMIT", "10 per minute"),
            login_lockout_threshold=_int(env, "LOGIN_LOCKOUT_THRESHOLD", 5),
            login_lockout_seconds=_int(env, "LOGIN_LOCKOUT_SECONDS", 15 * 60),
            api_key_max_days=_int(env, "API_KEY_MAX_DAYS", 365),
            trusted_proxies=_int(env, "TRUSTED_PROXIES", 0),
            job_lease_seconds=_int(env, "JOB_LEASE_SECONDS", 60),
            job_max_attempts=_int(env, "JOB_MAX_ATTEMPTS", 5),
            smtp_host=env.get(ENV_PREFIX + "SMTP_HOST") or None,
            smtp_port=_int(env, "SMTP_PORT", 25),
            smtp_user=env.get(ENV_PREFIX + "SMTP_USER") or None,
            smtp_password=env.get(ENV_PREFIX + "SMTP_PASSWORD") or None,
            smtp_from=env.get(ENV_PREFIX + "SMTP_FROM") or "crmkit@localhost",
            smtp_starttls=bool(_optional_bool(env, "SMTP_STARTTLS")),
            sms_url=env.get(ENV_PREFIX + "SMS_URL") or None,
            sms_key=env.get(ENV_PREFIX + "SMS_KEY") or None,
            wechat_url=env.get(ENV_PREFIX + "WECHAT_URL") or None,
            wechat_key=env.get(ENV_PREFIX + "WECHAT_KEY") or None,
            message_rate_per_minute=_int(env, "MESSAGE_RATE_PER_MINUTE", 60),
            imap_host=env.get(ENV_PREFIX + "IMAP_HOST") or None,
            imap_port=_int(env, "IMAP_PORT", 0) or None,
            imap_user=env.get(ENV_PREFIX + "IMAP_USER") or None,
            imap_password=env.get(ENV_PREFIX + "IMAP_PASSWORD") or None,
            imap_security=_choice(env, "IMAP_SECURITY", ("ssl", "starttls", "plain"), "ssl"),
            imap_folder=env.get(ENV_PREFIX + "IMAP_FOLDER") or "INBOX",
            base_url=_base_url(env),
        )

    def require_secret_key(self) -> str:
        """A server without debug refuses to start without a configured secret of at least 32 characters."""
        if self.secret_key and (len(self.secret_key) >= MIN_SECRET_KEY_LENGTH or self.debug):
            return self.secret_key
        if self.debug:
            return "crmkit-debug-only-secret"
        hint = "`export CRMKIT_SECRET_KEY=$(python -c 'import secrets;print(secrets.token_hex(32))')`."
        if self.secret_key:
            raise ConfigError(
                f"CRMKIT_SECRET_KEY is too short ({len(self.secret_key)} characters); it must be at least "
                f"{MIN_SECRET_KEY_LENGTH} random characters, e.g. {hint}"
            )
        raise ConfigError(f"CRMKIT_SECRET_KEY is not set. Set it to a long random value, e.g. {hint}")

    @property
    def cookies_secure(self) -> bool:
        """Cookies carry the Secure flag unless told otherwise; debug (local http) defaults to off."""
        return (not self.debug) if self.secure_cookies is None else self.secure_cookies

    @property
    def upload_dir(self) -> Path:
        return self.var_dir / "files"

    @property
    def huey_file(self) -> Path:
        """The SQLite file Huey queues in when no Redis is configured."""
        return self.var_dir / "huey.db"


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


def _choice(env, name: str, choices: tuple[str, ...], default: str) -> str:
    raw = (env.get(ENV_PREFIX + name) or "").strip().lower()
    if raw == "":
        return default
    if raw not in choices:
        raise ConfigError(f"{ENV_PREFIX}{name} must be one of {', '.join(choices)}, not {raw!r}.")
    return raw


def _retention_days(env) -> int:
    """CRMKIT_AUDIT_RETENTION_DAYS: at least 180 days (six months), shorter only with CRMKIT_DEBUG on."""
    days = _int(env, "AUDIT_RETENTION_DAYS", 180)
    debug = env.get(ENV_PREFIX + "DEBUG", "").lower() in {"1", "true", "yes", "on"}
    if days < 180 and not debug:
        raise ConfigError(f"{ENV_PREFIX}AUDIT_RETENTION_DAYS must be at least 180 (six months), not {days}; "
                          "shorter periods are only allowed with CRMKIT_DEBUG=1.")
    return days


def _base_url(env) -> str | None:
    """CRMKIT_BASE_URL: an http(s) address without a trailing slash (links in messages are built on it)."""
    raw = (env.get(ENV_PREFIX + "BASE_URL") or "").strip()
    if raw == "":
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{ENV_PREFIX}BASE_URL must be an http(s) address such as https://crm.example.cn, not {raw!r}.")
    return raw.rstrip("/")


def _optional_bool(env, name: str) -> bool | None:
    raw = (env.get(ENV_PREFIX + name) or "").strip().lower()
    if raw == "":
        return None
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    raise ConfigError(f"{ENV_PREFIX}{name} must be one of 1/0, true/false, yes/no, on/off, not {raw!r}.")


def _rate_limit(env, name: str, default: str) -> str:
    """A Flask-Limiter rate string such as ``10 per minute`` or ``5/30 seconds``."""
    raw = (env.get(ENV_PREFIX + name) or "").strip()
    if raw == "":
        return default
    from limits import parse_many

    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name} must be a rate such as '10 per minute', not {raw!r}.") from None
    return raw
