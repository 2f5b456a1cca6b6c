"""REL-05 Redis down: the Celery broker, rate limits and caches die during order entry and while the
stop-loss monitor has work to do; the platform's processes and this test reach Redis via a proxy.

While it is down: a new entry is refused with a 503 envelope before anything is stored or any broker
is asked (not even for a quote); an entry stored just before the queue failed is kept PENDING_SUBMIT
(the adapter's enqueue gives up quietly); login still works (limits fall back to per-process
memory); /ready names the Celery broker. Once Redis is back, without restarting anything, the kept
entry is sent and the position the market breached meanwhile is closed exactly once, all within
two minutes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from models import Order, Trade, User
from tests.proxy import TcpProxy, proxied
from tests.reliability.outage import (
    FAST_INTERVALS,
    Platform,
    api_order_body,
    browser_login,
    is_ready,
    platform_processes,
    seconds_until,
)
from tests.scale import scaled
from tests.support import DEFAULT_PASSWORD, TEST_DATABASE_URL, TEST_REDIS_URL
from tests.venues import Fakes, PaperVenue, open_venue
from utils.enums import OrderStatus, TradeStatus
from utils.extensions import db
from utils.services import api_tokens, orders
from utils.tasks.trading import enqueue_submit

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (TEST_DATABASE_URL and TEST_REDIS_URL), reason="a Redis outage needs PostgreSQL and Redis"),
]
OUTAGE_SECONDS = scaled(6, 60)
RECOVERY_LIMIT_SECONDS = 120


@pytest.fixture()
def redis_proxy() -> Iterator[TcpProxy]:
    """The proxy between Redis and everything else: the platform's processes and this test's app."""
    with proxied(TEST_REDIS_URL) as proxy:
        yield proxy


@pytest.fixture()
def environ(environ: dict[str, str], fakes: Fakes, redis_proxy: TcpProxy) -> dict[str, str]:
    """The test settings, pointed at the fakes and at Redis through the proxy, with short intervals."""
    return environ | fakes.environ() | FAST_INTERVALS | {"REDIS_URL": redis_proxy.url_for(TEST_REDIS_URL)}


@pytest.fixture()
def platform(app: Flask, environ: dict[str, str], tmp_path: Path) -> Iterator[Platform]:
    """gunicorn, worker and beat."""
    with platform_processes(environ, tmp_path) as running:
        yield running


def trade_status(trade_id: int) -> TradeStatus:
    """The trade's status as stored now (a fresh read)."""
    db.session.rollback()
    return db.session.get_one(Trade, trade_id).status


def order_status(order_id: int) -> OrderStatus:
    """The order's status as stored now (a fresh read)."""
    db.session.rollback()
    return db.session.get_one(Order, order_id).status


def open_position(platform: Platform, venue: PaperVenue, bearer: dict[str, str]) -> Trade:
    """A protected paper position, entered through the API and filled by the worker."""
    answer = platform.timed("POST", "/api/v1/orders", headers=bearer, json=api_order_body(venue))[0]
    assert answer.status_code == 202, answer.text
    trade_id = db.session.get_one(Order, answer.json()["id"]).trade_id
    seconds_until(lambda: trade_status(trade_id) == TradeStatus.OPEN, "the entry to fill", timeout=30)
    return db.session.get_one(Trade, trade_id)


def test_redis_outage_refuses_entries_keeps_intents_and_completes_them_once_back(
    app: Flask, fakes: Fakes, platform: Platform, redis_proxy: TcpProxy, trader: User
) -> None:
    paper = open_venue("paper", fakes, trader)
    coinbase = open_venue("coinbase", fakes, trader)
    bearer = {"Authorization": "Bearer " + api_tokens.create_token(trader, "battery", ["read", "trade"]).plaintext}
    position = open_position(platform, paper, bearer)
    kept = orders.place_order(trader, paper.ticket())  # stored; then the queue dies before the enqueue
    processes = platform.pids()
    orders_before = db.session.scalar(db.select(db.func.count(Order.id)))

    redis_proxy.down()
    enqueue_submit(kept.id)
    paper.breach(position)  # the monitor has a close to make as soon as it can run again
    broker_requests = len(fakes.coinbase.received)
    refused, refused_in = platform.timed("POST", "/api/v1/orders", headers=bearer, json=api_order_body(coinbase))
    ready = platform.timed("GET", "/ready")[0]
    browser_login(platform, trader.email, DEFAULT_PASSWORD)  # asserts the login succeeds
    time.sleep(OUTAGE_SECONDS)
    db.session.rollback()
    orders_during = db.session.scalar(db.select(db.func.count(Order.id)))
    broker_requests_during = [r.path for r in fakes.coinbase.received[broker_requests:]]
    redis_proxy.up()
    returned = time.monotonic()
    ready_in = seconds_until(lambda: is_ready(platform), "/ready to answer 200 again", RECOVERY_LIMIT_SECONDS)
    seconds_until(lambda: trade_status(position.id) == TradeStatus.CLOSED, "the breached position to close", 120)
    seconds_until(lambda: order_status(kept.id) == OrderStatus.FILLED, "the kept entry to fill", 120)
    completed_in = time.monotonic() - returned

    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "queue_unavailable"
    assert "nothing was stored or sent" in refused.json()["error"]["message"]
    assert broker_requests_during == [], "the broker was asked for something while Redis was down"
    assert orders_during == orders_before, "an order was stored (or an exit made) while Redis was down"
    assert ready.status_code == 503 and ready.json()["checks"]["celery_broker"].startswith("unreachable")
    assert completed_in < RECOVERY_LIMIT_SECONDS
    assert paper.market_sells() == 1, "the breached position was sold exactly once"
    assert platform.pids() == processes, "no process was restarted"
    print(  # noqa: T201 - the figures RELIABILITY.md reports
        f"REL-05: entry refused in {refused_in:.2f} s; ready {ready_in:.1f} s and everything pending done "
        f"{completed_in:.1f} s after Redis returned"
    )
