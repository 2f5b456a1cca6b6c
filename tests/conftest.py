"""Fixtures: one migrated database per session, a fresh app and empty tables per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from models import BrokerConnection, User
from tests.support import (
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    IsolatedClient,
    base_environ,
    make_user,
    reset_schema,
    truncate_all,
)
from utils.observability import configure_logging


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI the real services are required: never fall back to the embedded default silently.

    Logging is configured as the app does it, so tests of pure code that log (the risk engine logs
    every rule that raises) do not use structlog's unconfigured default with its slow tracebacks.
    """
    if os.environ.get("ARBION_REQUIRE_SERVICES") == "1" and not (TEST_DATABASE_URL and TEST_REDIS_URL):
        raise pytest.UsageError("ARBION_REQUIRE_SERVICES=1 but TEST_DATABASE_URL/TEST_REDIS_URL are not set")
    configure_logging("WARNING", "json")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test database, emptied and migrated once per session with `flask db upgrade`."""
    url = TEST_DATABASE_URL or f"sqlite:///{tmp_path_factory.mktemp('db') / 'arbion-test.db'}"
    reset_schema(url)
    migrate_app = create_app(base_environ(url))
    result = migrate_app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    return url


@pytest.fixture()
def environ(database_url: str) -> dict[str, str]:
    """The settings the test app is built from; tests may change them before using ``app``."""
    return base_environ(database_url)


@pytest.fixture()
def app(environ: dict[str, str]) -> Iterator[Flask]:
    """A fresh app with empty tables and an empty Redis test database."""
    if TEST_REDIS_URL:
        redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    application = create_app(environ)
    application.test_client_class = IsolatedClient
    with application.app_context():
        yield application
        from utils.extensions import db

        db.session.remove()
        truncate_all(application)
        db.engine.dispose()


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    """A browser-like test client."""
    return app.test_client()


@pytest.fixture()
def trader(app: Flask) -> User:
    """A trader (trader@example.com, the default password)."""
    return make_user()


@pytest.fixture()
def paper(trader: User) -> BrokerConnection:
    """The trader's paper account with $1,000,000."""
    from utils.services import connections

    return connections.create_paper_connection(trader, "Sandbox", Decimal("1000000"))
