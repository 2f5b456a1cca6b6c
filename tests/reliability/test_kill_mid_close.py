"""REL-02 Kill mid-close: the worker process is SIGKILLed at each step of a stop-loss close.

A real Celery worker (a subprocess, solo pool: one process) runs the monitor and the submit task
against the Coinbase fake; the test plays beat (it enqueues the monitor and tracking tasks every
interval, as beat would). A position with a broker-held stop is breached; the monitor cancels the
broker stop and stores the market exit; the worker sends it and is killed:

- before_submit: the fake holds the exit's POST /orders before it runs (the broker never sees it);
- after_accept: the fake has executed the exit and holds its answer (we never record it);
- after_record: the exit row carries the broker's id; the worker dies before any tracking pass.

A fresh worker takes over. Whatever happened, the broker sells exactly once what was bought, within
two monitor cycles of the new worker's start (our books follow on the next tracking pass), and the
trade ends CLOSED with the P&L the broker's own bookings imply. The held request is released only
after the kill, so it never reaches a worker.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import TypeVar

import pytest
from flask import Flask

from models import MonitorRun, Order
from tests.fakes.coinbase import PREFIX
from tests.fakes.server import Fault
from tests.reliability.stack import Stack, enqueue, every
from tests.scale import scaled
from tests.support import make_user
from tests.venues import (
    CRYPTO,
    CoinbaseVenue,
    Fakes,
    closed_trade,
    eventually,
    open_venue,
    orders_of,
    trade_of,
)
from utils.enums import OrderPurpose, OrderStatus, TradeStatus
from utils.extensions import db
from utils.services import execution, orders, protection

INTERVAL = 1
STEPS = ("before_submit", "after_accept", "after_record")
RUNS = scaled(ci=3, soak=20)
ORDERS_ROUTE = f"POST {PREFIX}/orders"
BEAT_TASKS = ("monitoring.stop_loss_cycle", "trading.track_orders")
T = TypeVar("T")
MEASURED: dict[str, list[float]] = {}


@pytest.fixture()
def environ(environ: dict[str, str], fakes: Fakes) -> dict[str, str]:
    # Short intervals, and a dead sender's order looked up (and given up) within seconds, so each
    # run fits in a few seconds; production keeps the ratios (see env.example).
    return (
        environ
        | fakes.environ()
        | every(INTERVAL)
        | {
            "ORDER_SEND_GRACE": "1",
            "ORDER_LOOKUP_GIVE_UP": "2",
        }
    )


def with_beat(app: Flask, check: Callable[[], T | None], what: str) -> T:
    """Poll ``check`` while playing beat: the monitor and tracking tasks are enqueued every interval.
    The bound is generous (a loaded machine starts workers slowly); the criteria count cycles."""

    def nudge() -> None:
        for task in BEAT_TASKS:
            enqueue(app.extensions["celery"], task, INTERVAL)

    return eventually(check, what, nudge=nudge, nudge_every=INTERVAL, timeout=45)


def open_protected_position(app: Flask, venue: CoinbaseVenue) -> int:
    """Buy with a stop through the real services; the worker tracks the fill and places the broker stop."""
    venue.fakes.coinbase.set_price(CRYPTO, "50000.00", "50010.00")
    entry = orders.place_order(venue.user, venue.ticket())
    execution.send(entry.id)
    trade_id = entry.trade_id
    assert trade_id is not None

    def protected() -> bool:
        """Open, and the stop AT the broker: no order write is in flight when the test arms the fake."""
        trade = trade_of(trade_id)
        stop = protection.protective_order(trade)
        return trade.status == TradeStatus.OPEN and stop is not None and stop.broker_order_id is not None

    with_beat(app, protected, "the fill and the broker stop")
    return trade_id


def exit_recorded(trade_id: int) -> Order | None:
    """The trade's exit once its row carries the broker's order id."""
    return next((o for o in orders_of(trade_id) if o.purpose == OrderPurpose.EXIT and o.broker_order_id), None)


def kill_during_close(
    app: Flask, stack: Stack, worker: subprocess.Popen[bytes], venue: CoinbaseVenue, step: str, trade_id: int
) -> None:
    """Breach the stop, let the worker close, and SIGKILL it at ``step``."""
    arrived, release = threading.Event(), threading.Event()
    if step != "after_record":
        kind = Fault.STALL if step == "before_submit" else Fault.READ_TIMEOUT
        venue.fakes.coinbase.plan.add(ORDERS_ROUTE, kind, seconds=60, arrived=arrived, release=release)
    venue.breach(trade_of(trade_id))
    if step == "after_record":
        with_beat(app, partial(exit_recorded, trade_id), "the exit's broker id")
    else:
        with_beat(app, arrived.is_set, "the exit at the fake")
    stack.kill(worker)
    release.set()  # the held request now answers a dead socket


def sell_fills(venue: CoinbaseVenue) -> list[dict[str, str]]:
    """Every SELL execution the fake booked, oldest first."""
    return [f for f in venue.fakes.coinbase.fills if f["side"] == "SELL" and f["product_id"] == CRYPTO]


def broker_pnl(venue: CoinbaseVenue, trade_id: int) -> Decimal:
    """Realized P&L of the trade from the fake's fills of its orders (sells minus buys minus fees)."""
    ids = {o.broker_order_id for o in orders_of(trade_id)}
    fills = [f for f in venue.fakes.coinbase.fills if f["order_id"] in ids]
    signed = sum(
        (Decimal(f["size"]) * Decimal(f["price"]) * (1 if f["side"] == "SELL" else -1) for f in fills), Decimal(0)
    )
    return signed - sum((Decimal(f["commission"]) for f in fills), Decimal(0))


def cycles_between(start: datetime, end: datetime) -> int:
    """Monitor cycles that started in [start, end]."""
    statement = db.select(db.func.count(MonitorRun.id)).where(MonitorRun.started_at.between(start, end))
    return db.session.scalar(statement) or 0


@pytest.mark.slow
@pytest.mark.timeout(60 + RUNS * 40)
@pytest.mark.parametrize("step", STEPS)
def test_a_worker_killed_mid_close_leaves_the_position_closed_exactly_once(
    app: Flask, fakes: Fakes, stack: Stack, step: str
) -> None:
    venue = open_venue("coinbase", fakes, make_user())
    assert isinstance(venue, CoinbaseVenue)
    worker = stack.worker()
    for _ in range(RUNS):
        trade_id = open_protected_position(app, venue)
        sells_before = len(sell_fills(venue))
        kill_during_close(app, stack, worker, venue, step, trade_id)

        restarted_at, clock = datetime.now(UTC), time.monotonic()
        worker = stack.worker()
        closed = with_beat(app, partial(closed_trade, trade_id), "the close")
        MEASURED.setdefault(step, []).append(round(time.monotonic() - clock, 1))

        new_sells = sell_fills(venue)[sells_before:]
        assert [Decimal(f["size"]) for f in new_sells] == [venue.quantity], "one sell of the whole position"
        assert venue.sold() == venue.bought(), "the broker's position never goes short: no oversell"
        assert closed.exit_filled_quantity == closed.filled_quantity == venue.quantity
        assert closed.realized_pnl == broker_pnl(venue, trade_id), "the P&L the broker's bookings imply"
        sold_at = datetime.fromisoformat(new_sells[0]["trade_time"])
        story = [(o.purpose.value, o.status.value, o.status_detail) for o in orders_of(trade_id)]
        assert cycles_between(restarted_at, sold_at) <= 2, f"sold at the broker within 2 monitor cycles: {story}"
        exits = [o for o in orders_of(trade_id) if o.purpose == OrderPurpose.EXIT]
        assert [o.status for o in exits if o.status == OrderStatus.FILLED] == [OrderStatus.FILLED]
    print(f"REL-02 {step}: seconds from restart to CLOSED: {sorted(MEASURED[step])}")  # noqa: T201 - for RELIABILITY.md
