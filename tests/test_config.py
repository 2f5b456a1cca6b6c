"""Settings from the environment (production's refusal of unsafe ones: tests/security/test_production_config.py)."""

from __future__ import annotations

import pytest

from tests.support import TEST_ENCRYPTION_KEY
from utils.config import load_config, normalise_database_url
from utils.exceptions import ConfigurationError


def test_development_uses_the_embedded_default(tmp_path: object) -> None:
    config = load_config(
        {"ARBION_ENV": "development", "SECRET_KEY": "s", "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY}, "/srv/i"
    )
    assert config["SQLALCHEMY_DATABASE_URI"] == "sqlite:////srv/i/arbion.db"
    assert config["CELERY"]["broker_url"] == "sqla+sqlite:////srv/i/celery-broker.sqlite"
    assert config["RATELIMIT_STORAGE_URI"] == "memory://"
    assert config["SESSION_COOKIE_SECURE"] is False


def test_heroku_postgres_scheme_is_accepted() -> None:
    assert normalise_database_url("postgres://u:p@h/d") == "postgresql://u:p@h/d"
    assert normalise_database_url("postgresql://u@h/d") == "postgresql://u@h/d"


def test_env_example_documents_every_setting() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    read = set(re.findall(r'(?:text|flag|number|decimal|ports)\("([A-Z_]+)"', (root / "utils/config.py").read_text()))
    read |= set(re.findall(r'"(ENCRYPTION_[A-Z_]+|SESSION_SECRET)"', (root / "utils/encryption.py").read_text()))
    documented = set(re.findall(r"^([A-Z_]+)=", (root / "env.example").read_text(), re.MULTILINE))
    assert read, "the settings reader changed shape: update this test"
    assert read - documented == set()


def test_webhook_ports_are_443_unless_listed() -> None:
    base = {"ARBION_ENV": "development", "SECRET_KEY": "s", "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY}
    assert load_config(base)["WEBHOOK_ALLOWED_PORTS"] == (443,)
    assert load_config(base | {"WEBHOOK_ALLOWED_PORTS": "443, 8443"})["WEBHOOK_ALLOWED_PORTS"] == (443, 8443)
    for bad in ("0", "65536", "443,", "https", "-1", "44\uff13"):
        with pytest.raises(ConfigurationError, match="WEBHOOK_ALLOWED_PORTS must be port numbers"):
            load_config(base | {"WEBHOOK_ALLOWED_PORTS": bad})


def test_token_lifetimes_are_read_and_a_default_past_the_maximum_is_refused() -> None:
    base = {"ARBION_ENV": "development", "SECRET_KEY": "s", "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY}
    assert (load_config(base)["API_TOKEN_DEFAULT_DAYS"], load_config(base)["API_TOKEN_MAX_DAYS"]) == (90, 365)
    with pytest.raises(ConfigurationError, match=r"API_TOKEN_DEFAULT_DAYS \(400\) must not exceed"):
        load_config(base | {"API_TOKEN_DEFAULT_DAYS": "400"})
