"""Equity snapshots: taken by a real Celery worker on the beat schedule, expired ones purged."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from flask import Flask

from models import BrokerConnection, EquitySnapshot, PaperAccount, User
from tests.support import make_user
from tests.tasks.test_maintenance import worker  # noqa: F401 - the real-worker fixture
from tests.trading_support import add_snapshot
from utils.enums import ConnectionStatus
from utils.extensions import db
from utils.money import utcnow
from utils.services import connections
from utils.tasks.portfolio import snapshot_equity
from utils.tasks.schedule import build_beat_schedule


def test_the_beat_takes_snapshots_at_the_configured_interval(app: Flask) -> None:
    app.config["EQUITY_SNAPSHOT_INTERVAL"] = 600
    entry = build_beat_schedule(app.config)["snapshot-equity"]
    assert entry["task"] == "portfolio.snapshot_equity" and entry["schedule"] == 600.0


def test_a_worker_snapshots_connected_accounts_and_purges_expired_rows(
    app: Flask,
    worker: None,  # noqa: F811 - the fixture imported above
    trader: User,
    paper: BrokerConnection,
) -> None:
    app.config["EQUITY_SNAPSHOT_RETENTION_DAYS"] = 30
    other = connections.create_paper_connection(make_user("other@example.com"), "Other", Decimal("5000"))
    errored = connections.create_paper_connection(trader, "Errored", Decimal(1))
    errored.status = ConnectionStatus.ERROR
    lost = connections.create_paper_connection(trader, "Lost ledger", Decimal(1))
    db.session.execute(db.delete(PaperAccount).where(PaperAccount.connection_id == lost.id))
    db.session.commit()
    add_snapshot(trader, paper, utcnow() - timedelta(days=31), Decimal(1))
    kept = add_snapshot(trader, paper, utcnow() - timedelta(days=29), Decimal(2))
    assert snapshot_equity.delay().get(timeout=30) == {"written": 2, "unavailable": 1, "purged": 1}
    db.session.expire_all()
    rows = db.session.scalars(db.select(EquitySnapshot).where(EquitySnapshot.id != kept.id)).all()
    assert {(row.connection_id, row.equity) for row in rows} == {
        (paper.id, Decimal("1000000")),
        (other.id, Decimal("5000")),
    }
    assert len({row.taken_at for row in rows}) == 1, "one run, one moment: the curve sums accounts per run"
    assert db.session.get(EquitySnapshot, kept.id) is not None
