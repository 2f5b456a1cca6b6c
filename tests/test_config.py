"""Settings from the environment, and production's refusal of unsafe ones."""

from __future__ import annotations

import pytest

from app import create_app
from tests.support import TEST_ENCRYPTION_KEY, TEST_SECRET_KEY
from utils.config import load_config, normalise_database_url
from utils.exceptions import ConfigurationError

SAFE_PRODUCTION = {
    "ARBION_ENV": "production",
    "SECRET_KEY": TEST_SECRET_KEY,
    "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
    "DATABASE_URL": "postgres://arbion:pw@db.internal:5432/arbion",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def refusal(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_config(environ)
    return caught.value.message


def test_safe_production_settings_load() -> None:
    config = load_config(SAFE_PRODUCTION)
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql://arbion:pw@db.internal:5432/arbion"
    assert config["CELERY"]["broker_url"] == "redis://127.0.0.1:6379/0"
    assert config["RATELIMIT_STORAGE_URI"] == "redis://127.0.0.1:6379/0"
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["SESSION_COOKIE_HTTPONLY"] is True
    assert config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert config["LOG_FORMAT"] == "json"


def test_environment_defaults_to_production() -> None:
    environ = {k: v for k, v in SAFE_PRODUCTION.items() if k != "ARBION_ENV"}
    assert load_config(environ)["ARBION_ENV"] == "production"
    assert "REDIS_URL is not set" in refusal({k: v for k, v in environ.items() if k != "REDIS_URL"})


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY is not set"),
        ({"DEBUG": "true"}, "DEBUG is on"),
        ({"DATABASE_URL": "sqlite:///prod.db"}, "DATABASE_URL points at SQLite"),
        ({"DATABASE_URL": ""}, "DATABASE_URL is not set"),
        ({"REDIS_URL": ""}, "REDIS_URL is not set"),
        ({"ENCRYPTION_KEY": ""}, "Encryption is not configured"),
        ({"ENCRYPTION_KEY": "not-a-key"}, "ENCRYPTION_KEY is malformed"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY is shorter than 32 characters"),
    ],
)
def test_production_refuses_each_unsafe_setting(change: dict[str, str], expected: str) -> None:
    message = refusal({**SAFE_PRODUCTION, **change})
    assert expected in message
    assert message.startswith("ArbionTrader refuses to start (production configuration)")


def test_every_problem_is_named_in_one_message() -> None:
    message = refusal({"ARBION_ENV": "production", "DEBUG": "1"})
    for expected in ("SECRET_KEY", "DEBUG is on", "DATABASE_URL is not set", "REDIS_URL", "ENCRYPTION_KEY"):
        assert expected in message


def test_create_app_refuses_to_start_on_unsafe_production() -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_URL points at SQLite"):
        create_app({**SAFE_PRODUCTION, "DATABASE_URL": "sqlite:///x.db"})


def test_development_uses_the_embedded_default(tmp_path: object) -> None:
    config = load_config(
        {"ARBION_ENV": "development", "SECRET_KEY": "s", "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY}, "/srv/i"
    )
    assert config["SQLALCHEMY_DATABASE_URI"] == "sqlite:////srv/i/arbion.db"
    assert config["CELERY"]["broker_url"] == "sqla+sqlite:////srv/i/celery-broker.sqlite"
    assert config["RATELIMIT_STORAGE_URI"] == "memory://"
    assert config["SESSION_COOKIE_SECURE"] is False


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DEBUG", "maybe", "DEBUG must be true or false"),
        ("HEARTBEAT_INTERVAL", "0", "HEARTBEAT_INTERVAL must be an integer >= 1"),
        ("AUDIT_RETENTION_DAYS", "soon", "AUDIT_RETENTION_DAYS must be an integer >= 1"),
        ("ARBION_ENV", "staging", "ARBION_ENV must be one of"),
    ],
)
def test_malformed_values_are_refused_with_their_name(name: str, value: str, expected: str) -> None:
    assert expected in refusal({**SAFE_PRODUCTION, name: value})


def test_heroku_postgres_scheme_is_accepted() -> None:
    assert normalise_database_url("postgres://u:p@h/d") == "postgresql://u:p@h/d"
    assert normalise_database_url("postgresql://u@h/d") == "postgresql://u@h/d"


def test_env_example_documents_every_setting() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    read = set(re.findall(r'(?:text|flag|number|decimal)\("([A-Z_]+)"', (root / "utils/config.py").read_text()))
    read |= set(re.findall(r'"(ENCRYPTION_[A-Z_]+|SESSION_SECRET)"', (root / "utils/encryption.py").read_text()))
    documented = set(re.findall(r"^([A-Z_]+)=", (root / "env.example").read_text(), re.MULTILINE))
    assert read, "the settings reader changed shape: update this test"
    assert read - documented == set()


def test_admins_need_two_factor_by_default_in_production_only() -> None:
    assert load_config(SAFE_PRODUCTION)["ADMIN_REQUIRE_TOTP"] is True
    development = {"ARBION_ENV": "development", "SECRET_KEY": TEST_SECRET_KEY, "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY}
    assert load_config(development)["ADMIN_REQUIRE_TOTP"] is False
    assert load_config({**development, "ADMIN_REQUIRE_TOTP": "on"})["ADMIN_REQUIRE_TOTP"] is True
