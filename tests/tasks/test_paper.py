"""Background matching of paper orders, executed by a real Celery worker and scheduled by beat."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from celery.contrib.testing.worker import start_worker
from flask import Flask

from app import create_app
from models import PaperOrder
from tests.services.test_paper_trading import LIQUIDITY, paper_account, place_large_limit_buy
from tests.support import base_environ
from utils.extensions import db
from utils.tasks.paper import match_working_orders


@pytest.fixture()
def worker(app: Flask) -> Iterator[None]:
    """A real Celery worker thread consuming from the app's broker (Redis in CI)."""
    with start_worker(app.extensions["celery"], pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield


def test_the_task_fills_resting_orders_in_a_real_worker(app: Flask, worker: None) -> None:
    connection, key = paper_account("trader@example.com")
    placed = place_large_limit_buy(app, connection, key)
    db.session.remove()
    match_working_orders.delay()
    deadline, filled = time.monotonic() + 20, LIQUIDITY
    while time.monotonic() < deadline and filled == LIQUIDITY:
        time.sleep(0.1)
        db.session.rollback()
        filled = db.session.scalar(
            db.select(PaperOrder.filled_quantity).where(PaperOrder.order_key == placed.broker_order_id)
        )
    assert filled == 2 * LIQUIDITY, "one task run is one more matching pass"


def test_beat_runs_the_matching_pass_every_configured_interval(app: Flask, database_url: str) -> None:
    assert app.config["PAPER_MATCH_INTERVAL"] == 5, "the default"
    configured = create_app(base_environ(database_url, PAPER_MATCH_INTERVAL="7"))
    celery_app = configured.extensions["celery"]
    entry = celery_app.conf.beat_schedule["paper-match-working-orders"]
    assert entry["task"] == "paper.match_working_orders"
    assert entry["task"] in celery_app.tasks
    assert entry["schedule"] == 7.0
    assert entry["options"] == {"expires": 7.0}, "a run that waited a whole interval is dropped"
