"""Migrations build the whole schema from nothing and agree with models.py."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask

from app import create_app
from tests.support import base_environ
from utils.extensions import db


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
    import sqlalchemy as sa

    extra = sa.Table("not_migrated", db.metadata, sa.Column("id", sa.Integer, primary_key=True))
    try:
        assert any(diff[0] == "add_table" for diff in schema_drift(app))  # type: ignore[index]
    finally:
        db.metadata.remove(extra)
