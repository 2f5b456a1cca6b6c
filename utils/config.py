"""Settings from the environment, and the refusal to run production on unsafe ones.

Every setting is read here and nowhere else; env.example documents each one. ``load_config``
returns the Flask config mapping; problems are collected and raised together, so an operator
sees every mistake in one message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from utils.encryption import configuration_problems as encryption_problems
from utils.exceptions import ConfigurationError

ENVIRONMENTS = ("development", "testing", "production")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_NO_LIMIT = {"off", "none"}


class _Reader:
    """Reads typed values from an environment mapping and remembers every problem."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ
        self.problems: list[str] = []

    def text(self, name: str, default: str = "") -> str:
        """A stripped string, or the default when unset or blank."""
        return (self.environ.get(name) or "").strip() or default

    def flag(self, name: str, default: bool) -> bool:
        """A boolean written as 1/0, true/false, yes/no or on/off."""
        raw = self.text(name).lower()
        if not raw:
            return default
        if raw in _TRUE or raw in _FALSE:
            return raw in _TRUE
        self.problems.append(f"{name} must be true or false, got {raw!r}.")
        return default

    def number(self, name: str, default: int, minimum: int = 0) -> int:
        """An integer at least ``minimum``."""
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            self.problems.append(f"{name} must be an integer >= {minimum}, got {raw!r}.")
            return default
        return value

    def decimal(self, name: str, default: str) -> Decimal:
        """A non-negative decimal number (money, basis points)."""
        raw = self.text(name, default)
        try:
            value = Decimal(raw)
        except InvalidOperation:
            value = Decimal(-1)
        if not value.is_finite() or value < 0:
            self.problems.append(f"{name} must be a non-negative number, got {raw!r}.")
            return Decimal(default)
        return value

    def ports(self, name: str, default: str) -> tuple[int, ...]:
        """A comma-separated list of TCP port numbers (1-65535)."""
        raw = self.text(name, default)
        parts = [part.strip() for part in raw.split(",")]
        if all(part.isascii() and part.isdigit() and 0 < int(part) < 65536 for part in parts):
            return tuple(int(part) for part in parts)
        self.problems.append(f"{name} must be port numbers (1-65535) separated by commas, got {raw!r}.")
        return tuple(int(part) for part in default.split(","))

    def limit_decimal(self, name: str, default: str) -> Decimal | None:
        """A non-negative decimal limit, or None (no limit) when set to "off" or "none"."""
        return None if self.text(name).lower() in _NO_LIMIT else self.decimal(name, default)

    def limit_number(self, name: str, default: int) -> int | None:
        """A non-negative integer limit, or None (no limit) when set to "off" or "none"."""
        return None if self.text(name).lower() in _NO_LIMIT else self.number(name, default)


def normalise_database_url(url: str) -> str:
    """Accept Heroku's ``postgres://`` scheme, which SQLAlchemy 2 no longer does."""
    if url.startswith("postgres://"):
        return "postgresql://" + url[len("postgres://") :]
    return url


def load_config(environ: Mapping[str, str] | None = None, instance_path: str = "instance") -> dict[str, Any]:
    """Build the Flask config from the environment; raise ConfigurationError listing all problems."""
    read = _Reader(os.environ if environ is None else environ)
    env = read.text("ARBION_ENV", "production").lower()
    if env not in ENVIRONMENTS:
        read.problems.append(f"ARBION_ENV must be one of {', '.join(ENVIRONMENTS)}, got {env!r}.")
        env = "production"
    config = _core_settings(read, env, instance_path)
    config.update(_security_settings(read, env))
    config.update(_operations_settings(read, env))
    config.update(_broker_settings(read))
    config.update(_risk_settings(read))
    config["ENCRYPTION"] = _encryption_settings(read)
    read.problems.extend(_missing_secrets(config))
    read.problems.extend(encryption_problems(config["ENCRYPTION"]))
    if env == "production":
        read.problems.extend(production_problems(config))
    if read.problems:
        raise ConfigurationError(_problem_message(env, read.problems))
    return config


def _core_settings(read: _Reader, env: str, instance_path: str) -> dict[str, Any]:
    redis_url = read.text("REDIS_URL")
    default_db = "" if env == "production" else f"sqlite:///{os.path.join(instance_path, 'arbion.db')}"
    database_url = normalise_database_url(read.text("DATABASE_URL", default_db))
    broker_default = redis_url or f"sqla+sqlite:///{os.path.join(instance_path, 'celery-broker.sqlite')}"
    results_default = redis_url or f"db+sqlite:///{os.path.join(instance_path, 'celery-results.sqlite')}"
    return {
        "ARBION_ENV": env,
        "DEBUG": read.flag("DEBUG", False),
        "TESTING": env == "testing",
        "SECRET_KEY": read.text("SECRET_KEY"),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": _engine_options(
            database_url, read.number("DATABASE_CONNECT_TIMEOUT", 2, 1), read.number("DATABASE_POOL_TIMEOUT", 5, 1)
        ),
        "REDIS_URL": redis_url,
        "CELERY": {
            "broker_url": read.text("CELERY_BROKER_URL", broker_default),
            "result_backend": read.text("CELERY_RESULT_BACKEND", results_default),
            "broker_connection_retry_on_startup": True,
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            # Keep our logging (structured, with secret redaction) in workers and beat too.
            "worker_hijack_root_logger": False,
            # Celery would swap sys.stderr for a logger proxy, and our handler writes to sys.stderr.
            "worker_redirect_stdouts": False,
            "result_expires": 3600,
            "timezone": "UTC",
            "enable_utc": True,
            "beat_schedule_filename": os.path.join(instance_path, "celerybeat-schedule"),
        },
    }


def _engine_options(database_url: str, connect_timeout: int, pool_timeout: int) -> dict[str, Any]:
    if database_url.startswith("sqlite"):
        # Web, worker and beat share one SQLite file: wait for locks instead of failing at once.
        return {"connect_args": {"timeout": 30}}
    # A database that is down must cost a request seconds, not minutes (a 503 within about 2 s):
    # short connect and pool waits; pre-ping replaces connections that died while it was away.
    return {
        "pool_pre_ping": True,
        "pool_size": 10,
        "max_overflow": 20,
        "pool_recycle": 1800,
        "pool_timeout": pool_timeout,
        "connect_args": {"connect_timeout": connect_timeout},
    }


def _security_settings(read: _Reader, env: str) -> dict[str, Any]:
    redis_url = read.text("REDIS_URL")
    return {
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": read.flag("SESSION_COOKIE_SECURE", env == "production"),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SECURE": read.flag("SESSION_COOKIE_SECURE", env == "production"),
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=read.number("SESSION_LIFETIME_HOURS", 12, 1)),
        "SESSION_IDLE_TIMEOUT": timedelta(minutes=read.number("SESSION_IDLE_MINUTES", 30, 1)),
        "WTF_CSRF_ENABLED": True,
        "WTF_CSRF_TIME_LIMIT": None,
        "RATELIMIT_STORAGE_URI": read.text("RATELIMIT_STORAGE_URI", redis_url or "memory://"),
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_STRATEGY": "moving-window",
        # While Redis is down the limits still hold, counted per process, and Redis is retried:
        # login keeps working (and limited) instead of failing; order entries are refused anyway.
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "LOGIN_LIMIT_PER_IP": read.text("LOGIN_LIMIT_PER_IP", "30 per 5 minutes"),
        # FAILED password and code checks (services.credential_checks), per account from one address
        # and per account from every address together. One address alone (at most 20 failures an
        # hour) cannot reach the account's own limit, so it cannot lock the owner out.
        "LOGIN_LIMIT_PER_ACCOUNT_ADDRESS": read.text("LOGIN_LIMIT_PER_ACCOUNT_ADDRESS", "5 per 5 minutes; 20 per hour"),
        "LOGIN_LIMIT_PER_ACCOUNT": read.text("LOGIN_LIMIT_PER_ACCOUNT", "50 per hour"),
        "API_RATE_LIMIT": read.text("API_RATE_LIMIT", "300 per minute"),
        "API_ORDER_RATE_LIMIT": read.text("API_ORDER_RATE_LIMIT", "60 per minute"),
        **_token_lifetimes(read),
        "PASSWORD_MIN_LENGTH": read.number("PASSWORD_MIN_LENGTH", 12, 8),
        "ADMIN_REQUIRE_TOTP": read.flag("ADMIN_REQUIRE_TOTP", env == "production"),
        "PROXY_FIX_X_FOR": read.number("PROXY_FIX_X_FOR", 0),
        "SUPERADMIN_EMAIL": read.text("SUPERADMIN_EMAIL"),
        "SUPERADMIN_PASSWORD": read.text("SUPERADMIN_PASSWORD"),
    }


def _token_lifetimes(read: _Reader) -> dict[str, int]:
    """How long a new API token lives by default, and at most (days)."""
    default_days = read.number("API_TOKEN_DEFAULT_DAYS", 90, 1)
    max_days = read.number("API_TOKEN_MAX_DAYS", 365, 1)
    if default_days > max_days:
        read.problems.append(
            f"API_TOKEN_DEFAULT_DAYS ({default_days}) must not exceed API_TOKEN_MAX_DAYS ({max_days})."
        )
    return {"API_TOKEN_DEFAULT_DAYS": default_days, "API_TOKEN_MAX_DAYS": max_days}


def _operations_settings(read: _Reader, env: str) -> dict[str, Any]:
    interval = read.number("HEARTBEAT_INTERVAL", 30, 1)
    return {
        "LOG_LEVEL": read.text("LOG_LEVEL", "INFO").upper(),
        "LOG_FORMAT": read.text("LOG_FORMAT", "json" if env == "production" else "console").lower(),
        "HEARTBEAT_INTERVAL": interval,
        "HEARTBEAT_MAX_AGE": read.number("HEARTBEAT_MAX_AGE", interval * 3, 1),
        "AUDIT_RETENTION_DAYS": read.number("AUDIT_RETENTION_DAYS", 365, 1),
    }


def _broker_settings(read: _Reader) -> dict[str, Any]:
    return {
        "PAPER_STARTING_CASH": read.decimal("PAPER_STARTING_CASH", "100000"),
        "PAPER_SLIPPAGE_BPS": read.decimal("PAPER_SLIPPAGE_BPS", "2"),
        "PAPER_LIQUIDITY_PER_TICK": read.decimal("PAPER_LIQUIDITY_PER_TICK", "10000"),
        "PAPER_COMMISSION_BPS": read.decimal("PAPER_COMMISSION_BPS", "0"),
        "PAPER_COMMISSION_MINIMUM": read.decimal("PAPER_COMMISSION_MINIMUM", "0"),
        "PAPER_PRICE_SEED": read.number("PAPER_PRICE_SEED", 0),
        "PAPER_MATCH_INTERVAL": read.number("PAPER_MATCH_INTERVAL", 5, 1),
        "ORDER_POLL_INTERVAL": read.number("ORDER_POLL_INTERVAL", 10, 1),
        "ORDER_SEND_GRACE": read.number("ORDER_SEND_GRACE", 60, 1),
        "ORDER_LOOKUP_GIVE_UP": read.number("ORDER_LOOKUP_GIVE_UP", 180, 1),
        "STOP_MONITOR_INTERVAL": read.number("STOP_MONITOR_INTERVAL", 60, 1),
        "STOP_MONITOR_MAX_QUOTE_AGE": read.number("STOP_MONITOR_MAX_QUOTE_AGE", 60, 1),
        "STOP_MONITOR_CHUNK_SIZE": read.number("STOP_MONITOR_CHUNK_SIZE", 200, 1),
        "QUOTE_CACHE_SECONDS": read.number("QUOTE_CACHE_SECONDS", 2, 0),
        "MARKET_HOURS_CACHE_SECONDS": read.number("MARKET_HOURS_CACHE_SECONDS", 300, 0),
        "BALANCE_CACHE_SECONDS": read.number("BALANCE_CACHE_SECONDS", 15, 0),
        "EQUITY_SNAPSHOT_INTERVAL": read.number("EQUITY_SNAPSHOT_INTERVAL", 900, 60),
        "EQUITY_SNAPSHOT_RETENTION_DAYS": read.number("EQUITY_SNAPSHOT_RETENTION_DAYS", 365, 1),
        "WEBHOOK_INTERVAL": read.number("WEBHOOK_INTERVAL", 10, 1),
        "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": read.flag("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", False),
        "WEBHOOK_ALLOWED_PORTS": read.ports("WEBHOOK_ALLOWED_PORTS", "443"),
        "RECONCILE_INTERVAL": read.number("RECONCILE_INTERVAL", 300, 30),
        "SCHWAB_CLIENT_ID": read.text("SCHWAB_CLIENT_ID"),
        "SCHWAB_CLIENT_SECRET": read.text("SCHWAB_CLIENT_SECRET"),
        "SCHWAB_REDIRECT_URI": read.text("SCHWAB_REDIRECT_URI"),
        "SCHWAB_API_BASE_URL": read.text("SCHWAB_API_BASE_URL", "https://api.schwabapi.com"),
        "SCHWAB_ORDER_WRITES_PER_MINUTE": read.number("SCHWAB_ORDER_WRITES_PER_MINUTE", 120, 1),
        "SCHWAB_TOKEN_UPKEEP_INTERVAL": read.number("SCHWAB_TOKEN_UPKEEP_INTERVAL", 300, 30),
        "COINBASE_API_BASE_URL": read.text("COINBASE_API_BASE_URL", "https://api.coinbase.com"),
        "BROKER_READ_TIMEOUT": read.decimal("BROKER_READ_TIMEOUT", "10"),
    }


def _risk_settings(read: _Reader) -> dict[str, Any]:
    """Default risk limits; an admin's per-user settings override each one (see services.risk)."""
    return {
        "RISK_MAX_ORDER_NOTIONAL": read.limit_decimal("RISK_MAX_ORDER_NOTIONAL", "25000"),
        "RISK_MAX_POSITION_NOTIONAL": read.limit_decimal("RISK_MAX_POSITION_NOTIONAL", "50000"),
        "RISK_MAX_TOTAL_EXPOSURE": read.limit_decimal("RISK_MAX_TOTAL_EXPOSURE", "250000"),
        "RISK_MAX_OPEN_POSITIONS": read.limit_number("RISK_MAX_OPEN_POSITIONS", 20),
        "RISK_MAX_ORDERS_PER_DAY": read.limit_number("RISK_MAX_ORDERS_PER_DAY", 200),
        "RISK_MAX_DAILY_LOSS": read.limit_decimal("RISK_MAX_DAILY_LOSS", "5000"),
        "RISK_EQUITIES_MARKET_HOURS_ONLY": read.flag("RISK_EQUITIES_MARKET_HOURS_ONLY", True),
        "RISK_MAX_QUOTE_AGE_SECONDS": read.number("RISK_MAX_QUOTE_AGE_SECONDS", 30, 1),
        "RISK_REQUIRE_STOP_LOSS": read.flag("RISK_REQUIRE_STOP_LOSS", True),
        "RISK_MAX_STOP_DISTANCE_PCT": read.limit_decimal("RISK_MAX_STOP_DISTANCE_PCT", "20"),
    }


def _encryption_settings(read: _Reader) -> dict[str, str]:
    names = ("ENCRYPTION_KEY", "ENCRYPTION_SECRET", "ENCRYPTION_SALT", "SESSION_SECRET", "ENCRYPTION_KEYS_OLD")
    return {name: read.text(name) for name in names}


def _missing_secrets(config: Mapping[str, Any]) -> list[str]:
    if config["SECRET_KEY"]:
        return []
    return ['SECRET_KEY is not set. Generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"']


_PRODUCTION_CHECKS: tuple[tuple[Callable[[Mapping[str, Any]], bool], str], ...] = (
    (lambda c: bool(c["DEBUG"]), "DEBUG is on. Unset DEBUG (or set DEBUG=false) in production."),
    (
        lambda c: not c["SQLALCHEMY_DATABASE_URI"],
        "DATABASE_URL is not set. Point it at PostgreSQL (postgresql://user:pass@host/db).",
    ),
    (
        lambda c: c["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"),
        "DATABASE_URL points at SQLite. Production needs PostgreSQL.",
    ),
    (
        lambda c: not c["REDIS_URL"],
        "REDIS_URL is not set. Production needs Redis for Celery, locks, rate limits and cache.",
    ),
    (
        lambda c: len(c["SECRET_KEY"]) < 32 and bool(c["SECRET_KEY"]),
        "SECRET_KEY is shorter than 32 characters. Use a long random value.",
    ),
    (
        lambda c: "replace" in c["SECRET_KEY"].lower() or 0 < len(set(c["SECRET_KEY"])) < 10,
        "SECRET_KEY looks like a placeholder or is not random. Generate one (see env.example).",
    ),
    (
        lambda c: not (c["SESSION_COOKIE_SECURE"] and c["REMEMBER_COOKIE_SECURE"]),
        "SESSION_COOKIE_SECURE is off. Production cookies must be sent over HTTPS only.",
    ),
    (
        # Per-process counters: each gunicorn worker would allow the full number of login attempts.
        lambda c: bool(c["REDIS_URL"]) and c["RATELIMIT_STORAGE_URI"].startswith("memory"),
        "RATELIMIT_STORAGE_URI is in-memory. Production needs shared (Redis) rate-limit storage.",
    ),
    (
        lambda c: not c["ADMIN_REQUIRE_TOTP"],
        "ADMIN_REQUIRE_TOTP is off. Administrators must use two-factor sign-in in production.",
    ),
    (
        lambda c: bool(c["WEBHOOK_ALLOW_PRIVATE_ADDRESSES"]),
        "WEBHOOK_ALLOW_PRIVATE_ADDRESSES is on. Webhooks must not reach private addresses in production.",
    ),
    (
        lambda c: c["SCHWAB_REDIRECT_URI"].lower().startswith("http:"),
        "SCHWAB_REDIRECT_URI uses plain http. Production callbacks must use https.",
    ),
)


def production_problems(config: Mapping[str, Any]) -> list[str]:
    """Every unsafe setting that production must refuse, as readable sentences."""
    return [message for is_unsafe, message in _PRODUCTION_CHECKS if is_unsafe(config)]


def _problem_message(env: str, problems: list[str]) -> str:
    lines = "\n".join(f"  - {problem}" for problem in problems)
    return f"ArbionTrader refuses to start ({env} configuration):\n{lines}\nSee env.example for every setting."
