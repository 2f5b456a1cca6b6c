"""Migrations build the whole schema from nothing and agree with models.py."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask

from app import create_app
from models import ApiToken
from tests.support import base_environ
from utils.extensions import db
from utils.money import utcnow


def schema_drift(app: Flask) -> list[object]:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, db.metadata))


def test_migrated_database_matches_the_models(app: Flask) -> None:
    assert schema_drift(app) == []


def test_upgrade_and_downgrade_on_an_empty_sqlite_file(tmp_path: Path) -> None:
    fresh = create_app(base_environ(f"sqlite:///{tmp_path / 'fresh.db'}"))
    runner = fresh.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    with fresh.app_context():
        assert schema_drift(fresh) == []
        tables = set(db.inspect(db.engine).get_table_names())
        assert {"users", "orders", "trades", "fills", "broker_connections", "audit_logs"} <= tables
    assert runner.invoke(args=["db", "downgrade", "base"]).exit_code == 0
    with fresh.app_context():
        assert set(db.inspect(db.engine).get_table_names()) == {"alembic_version"}


def test_a_model_change_without_a_migration_is_detected(app: Flask) -> None:
    extra = sa.Table("not_migrated", db.metadata, sa.Column("id", sa.Integer, primary_key=True))
    try:
        assert any(diff[0] == "add_table" for diff in schema_drift(app))  # type: ignore[index]
    finally:
        db.metadata.remove(extra)


def test_tokens_made_without_an_expiry_get_one_on_upgrade(tmp_path: Path) -> None:
    """3f6a9c1d2b84: a token that never expired gets 90 days from the upgrade, then expires_at is required."""
    fresh = create_app(base_environ(f"sqlite:///{tmp_path / 'tokens.db'}"))
    runner = fresh.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", "eec057b37184"]).exit_code == 0
    then = "2026-01-01 00:00:00"
    with fresh.app_context(), db.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO users (id, email, display_name, password_hash, role, active, session_version,"
                " created_at, updated_at) VALUES (1, 'a@example.com', '', 'x', 'trader', 1, 1, :then, :then)"
            ),
            {"then": then},
        )
        connection.execute(
            sa.text(
                "INSERT INTO api_tokens (user_id, name, token_hash, token_prefix, scopes, created_at)"
                " VALUES (1, 'old script', :hash, 'arb_old', 'read', :then)"
            ),
            {"hash": "0" * 64, "then": then},
        )
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    with fresh.app_context():
        token = db.session.scalars(db.select(ApiToken)).one()
        assert token.expires_at - utcnow() == pytest.approx(timedelta(days=90), abs=timedelta(minutes=5))
        columns = {column["name"]: column for column in db.inspect(db.engine).get_columns("api_tokens")}
        assert not columns["expires_at"]["nullable"]
    assert runner.invoke(args=["db", "downgrade", "eec057b37184"]).exit_code == 0
    with fresh.app_context():
        columns = {column["name"]: column for column in db.inspect(db.engine).get_columns("api_tokens")}
        assert columns["expires_at"]["nullable"]
