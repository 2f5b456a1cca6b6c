"""SEC-10: production refuses to start on each unsafe setting, with a message that names the fix.

Each unsafe setting is tried alone on top of a safe production configuration, through
``load_config``, ``create_app`` and a real gunicorn process; the message never echoes a secret.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from app import create_app
from tests.processes import BIN, ROOT
from tests.support import TEST_ENCRYPTION_KEY, TEST_SECRET_KEY
from utils.config import load_config
from utils.exceptions import ConfigurationError

SAFE_PRODUCTION = {
    "ARBION_ENV": "production",
    "SECRET_KEY": TEST_SECRET_KEY,
    "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
    "DATABASE_URL": "postgres://arbion:pw@db.internal:5432/arbion",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}
REFUSED_EVERYWHERE = [
    ({"SECRET_KEY": ""}, "SECRET_KEY is not set"),
    ({"ENCRYPTION_KEY": ""}, "Encryption is not configured"),
    ({"ENCRYPTION_KEY": "not-a-fernet-key-but-a-secret"}, "ENCRYPTION_KEY is malformed"),
]
REFUSED_IN_PRODUCTION = [
    ({"DEBUG": "true"}, "DEBUG is on"),
    ({"SECRET_KEY": "short-but-secret"}, "SECRET_KEY is shorter than 32 characters"),
    ({"SECRET_KEY": "replace-with-a-long-random-value"}, "SECRET_KEY looks like a placeholder"),
    ({"SECRET_KEY": "ab" * 24}, "SECRET_KEY looks like a placeholder or is not random"),
    ({"DATABASE_URL": ""}, "DATABASE_URL is not set"),
    ({"DATABASE_URL": "sqlite:///prod.db"}, "DATABASE_URL points at SQLite"),
    ({"REDIS_URL": ""}, "REDIS_URL is not set"),
    ({"RATELIMIT_STORAGE_URI": "memory://"}, "RATELIMIT_STORAGE_URI is in-memory"),
    ({"SESSION_COOKIE_SECURE": "false"}, "SESSION_COOKIE_SECURE is off"),
    ({"ADMIN_REQUIRE_TOTP": "false"}, "ADMIN_REQUIRE_TOTP is off"),
    ({"WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true"}, "WEBHOOK_ALLOW_PRIVATE_ADDRESSES is on"),
    ({"SCHWAB_REDIRECT_URI": "http://arbion.example/connections/schwab/callback"}, "SCHWAB_REDIRECT_URI uses plain"),
]


def refusal(environ: dict[str, str]) -> str:
    """The message of the ConfigurationError that ``load_config`` raises for ``environ``."""
    with pytest.raises(ConfigurationError) as caught:
        load_config(environ)
    return caught.value.message


def test_safe_production_settings_load() -> None:
    config = load_config(SAFE_PRODUCTION)
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql://arbion:pw@db.internal:5432/arbion"
    assert config["CELERY"]["broker_url"] == "redis://127.0.0.1:6379/0"
    assert config["RATELIMIT_STORAGE_URI"] == "redis://127.0.0.1:6379/0"
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["REMEMBER_COOKIE_SECURE"] is True
    assert config["SESSION_COOKIE_HTTPONLY"] is True
    assert config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert config["ADMIN_REQUIRE_TOTP"] is True
    assert config["LOG_FORMAT"] == "json"


def test_environment_defaults_to_production() -> None:
    environ = {k: v for k, v in SAFE_PRODUCTION.items() if k != "ARBION_ENV"}
    assert load_config(environ)["ARBION_ENV"] == "production"
    assert "REDIS_URL is not set" in refusal({k: v for k, v in environ.items() if k != "REDIS_URL"})


@pytest.mark.parametrize(("change", "expected"), REFUSED_EVERYWHERE + REFUSED_IN_PRODUCTION)
def test_production_refuses_each_unsafe_setting(change: dict[str, str], expected: str) -> None:
    message = refusal({**SAFE_PRODUCTION, **change})
    assert expected in message
    assert message.startswith("ArbionTrader refuses to start (production configuration)")
    assert message.count("\n  - ") == 1, "only the unsafe setting is reported"


@pytest.mark.parametrize(("change", "expected"), REFUSED_IN_PRODUCTION)
def test_development_accepts_what_only_production_refuses(change: dict[str, str], expected: str) -> None:
    assert load_config({**SAFE_PRODUCTION, "ARBION_ENV": "development", **change})["ARBION_ENV"] == "development"


@pytest.mark.parametrize(
    "secret", ["short-but-secret", "not-a-fernet-key-but-a-secret", "replace-with-a-long-random-value"]
)
def test_refusal_messages_never_echo_a_secret_value(secret: str) -> None:
    message = refusal({**SAFE_PRODUCTION, "SECRET_KEY": secret, "ENCRYPTION_KEY": secret})
    assert secret not in message


def test_every_problem_is_named_in_one_message() -> None:
    message = refusal({"ARBION_ENV": "production", "DEBUG": "1", "ADMIN_REQUIRE_TOTP": "0"})
    for expected in ("SECRET_KEY", "DEBUG is on", "DATABASE_URL is not set", "REDIS_URL", "ENCRYPTION_KEY", "TOTP"):
        assert expected in message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DEBUG", "maybe", "DEBUG must be true or false"),
        ("HEARTBEAT_INTERVAL", "0", "HEARTBEAT_INTERVAL must be an integer >= 1"),
        ("AUDIT_RETENTION_DAYS", "soon", "AUDIT_RETENTION_DAYS must be an integer >= 1"),
        ("SESSION_IDLE_MINUTES", "0", "SESSION_IDLE_MINUTES must be an integer >= 1"),
        ("ARBION_ENV", "staging", "ARBION_ENV must be one of"),
    ],
)
def test_malformed_values_are_refused_with_their_name(name: str, value: str, expected: str) -> None:
    assert expected in refusal({**SAFE_PRODUCTION, name: value})


def test_create_app_refuses_to_start_on_unsafe_production() -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_URL points at SQLite"):
        create_app({**SAFE_PRODUCTION, "DATABASE_URL": "sqlite:///x.db"})


def test_gunicorn_exits_with_the_refusal_instead_of_serving(tmp_path: object) -> None:
    environ = {**SAFE_PRODUCTION, "DEBUG": "on", "PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    command = [str(BIN / "gunicorn"), "--bind", "127.0.0.1:0", "--workers", "1", "app:create_app()"]
    finished = subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)
    assert finished.returncode != 0
    assert "ArbionTrader refuses to start (production configuration)" in finished.stderr
    assert "DEBUG is on. Unset DEBUG" in finished.stderr
    assert TEST_SECRET_KEY not in finished.stderr + finished.stdout


def test_admins_need_two_factor_by_default_in_production_only() -> None:
    development = {"ARBION_ENV": "development", "SECRET_KEY": TEST_SECRET_KEY, "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY}
    assert load_config(development)["ADMIN_REQUIRE_TOTP"] is False
    assert load_config({**development, "ADMIN_REQUIRE_TOTP": "on"})["ADMIN_REQUIRE_TOTP"] is True
