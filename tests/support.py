"""Test helpers: the test environment, schema reset, users, and logging in through the real form."""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient

from utils.enums import Role

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
TEST_ENCRYPTION_KEY = Fernet.generate_key().decode()
TEST_SECRET_KEY = "test-secret-key-7Fq2xLp9Wm4Rz8Vt1Nc6Hb3Jd5Gs0Ky"
DEFAULT_PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


class IsolatedClient(FlaskClient):
    """Each request runs in its own app context (fresh ``g`` and DB session), as in production,
    even while the test itself holds an app context for its own queries."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        """Send the request from an empty contextvars context."""
        return contextvars.Context().run(super().open, *args, **kwargs)


def base_environ(database_url: str, **overrides: str) -> dict[str, str]:
    """Settings for a test app: PostgreSQL/Redis when TEST_* URLs are set, embedded otherwise."""
    environ = {
        "ARBION_ENV": "testing",
        "SECRET_KEY": TEST_SECRET_KEY,
        "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        # Tests move prices and expect the next read to see them; tests/services/test_market_data.py
        # turns the shared quote cache on.
        "QUOTE_CACHE_SECONDS": "0",
        "MARKET_HOURS_CACHE_SECONDS": "0",  # tests open and close the fakes' markets at will
    }
    if TEST_REDIS_URL:
        environ["REDIS_URL"] = TEST_REDIS_URL
    else:
        environ["CELERY_BROKER_URL"] = "memory://"
        environ["CELERY_RESULT_BACKEND"] = "cache+memory://"
    environ.update(overrides)
    return environ


def reset_schema(database_url: str) -> None:
    """Drop everything, so migrations start from an empty database."""
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text("DROP SCHEMA public CASCADE"))
            connection.execute(sa.text("CREATE SCHEMA public"))
        else:
            existing = sa.MetaData()
            existing.reflect(connection)
            existing.drop_all(connection)
    engine.dispose()


def truncate_all(app: Flask) -> None:
    """Empty every application table (fast reset between tests)."""
    from utils.extensions import db

    tables = db.metadata.sorted_tables
    with db.engine.begin() as connection:
        if db.engine.dialect.name == "postgresql":
            names = ", ".join(table.name for table in tables)
            connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(tables):
                connection.execute(table.delete())


def make_user(email: str = "trader@example.com", role: Role = Role.TRADER, password: str = DEFAULT_PASSWORD) -> Any:
    """Create a user through the real service."""
    from utils.services import users

    return users.create_user(email, password, role)


def csrf_token(client: FlaskClient, path: str) -> str:
    """The CSRF token of the form served at ``path``."""
    return form_csrf_token(client.get(path).get_data(as_text=True), path)


def form_csrf_token(html: str, where: str = "the page") -> str:
    """The CSRF token of the (first) form in ``html``."""
    match = _CSRF.search(html)
    assert match, f"no csrf token on {where}"
    return match.group(1) or match.group(2)


def login(client: FlaskClient, email: str, password: str = DEFAULT_PASSWORD) -> Any:
    """Log in through the real form, CSRF token included."""
    token = csrf_token(client, "/auth/login")
    return client.post("/auth/login", data={"email": email, "password": password, "csrf_token": token})


def post_form(client: FlaskClient, form_path: str, action: str, data: dict[str, str] | None = None) -> Any:
    """Submit a form the way a browser would: token from the page at ``form_path``, POST to ``action``."""
    token = csrf_token(client, form_path)
    return client.post(action, data={**(data or {}), "csrf_token": token})


def count_queries(action: Callable[[], Any]) -> int:
    """How many SQL statements ``action`` sends to the database."""
    from sqlalchemy import event

    from utils.extensions import db

    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *rest: object) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    return len(statements)
