"""End to end through a real Celery worker, on the paper broker and the Schwab and Coinbase fakes.

A trader enters with a stop-loss through the order gateway; the adapter enqueues the submit task;
the entry fills; the protective stop goes to the broker (Schwab and paper: STOP; Coinbase:
STOP_LIMIT); the market crosses the stop; the monitor task (what Celery Beat runs) gives the broker
its grace, then cancels the broker stop and closes the position once; the exit fills; the trade ends
CLOSED with the realized P&L the broker's own bookings imply, and the audit trail tells the story in
order. The paper broker's synthetic prices cannot be steered, so there an emulated take-profit the
market has already crossed triggers the same close. Beat is not running: the test enqueues the beat
tasks itself while it waits.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from flask import Flask

from models import AuditLog, Fill, MonitorRun, Order, Trade
from tests.support import make_user
from tests.venues import (
    CRYPTO,
    VENUES,
    Fakes,
    Venue,
    closed_trade,
    eventually,
    open_venue,
    orders_of,
    running_fakes,
    trade_of,
)
from utils.enums import OrderPurpose, OrderStatus, OrderType, ProtectionMode, TradeStatus
from utils.extensions import db
from utils.services import orders, protection, trade_book
from utils.tasks.monitoring import stop_loss_cycle
from utils.tasks.trading import submit_order, track_orders

NATIVE_STOP = {"paper": OrderType.STOP, "schwab": OrderType.STOP, "coinbase": OrderType.STOP_LIMIT}


@pytest.fixture()
def fakes() -> Iterator[Fakes]:
    with running_fakes() as running:
        yield running


@pytest.fixture()
def environ(environ: dict[str, str], fakes: Fakes) -> dict[str, str]:
    # A 1-second monitor interval: the broker's grace before the backstop closes passes quickly.
    return environ | fakes.environ() | {"STOP_MONITOR_INTERVAL": "1"}


@pytest.fixture()
def worker(app: Flask) -> Iterator[None]:
    """A real worker thread on the app's Celery broker (Redis when TEST_REDIS_URL is set)."""
    celery_app = app.extensions["celery"]
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield
    celery_app.control.purge()  # nudges left in the queue must not reach the next test's worker


@pytest.fixture(params=VENUES)
def venue(request: pytest.FixtureRequest, app: Flask, fakes: Fakes) -> Venue:
    return open_venue(request.param, fakes, make_user())


def the_exit(trade_id: int) -> Order | None:
    """The trade's closing exit once the broker has it (it carries the broker's id)."""
    exits = [o for o in orders_of(trade_id) if o.purpose == OrderPurpose.EXIT]
    return exits[0] if exits and exits[0].broker_order_id else None


def audit_trail() -> list[str]:
    statement = db.select(AuditLog.action).order_by(AuditLog.id)
    return [action for action in db.session.scalars(statement) if action.startswith(("order.", "protection."))]


def enter_with_a_broker_stop(venue: Venue) -> Trade:
    """Place a protected entry as the dashboard does; the worker sends it, it fills, the stop goes out."""
    entry = orders.place_order(venue.user, venue.ticket())
    trade_id = entry.trade_id
    assert trade_id is not None
    submit_order.delay(entry.id)  # what the dashboard/API adapter does once the intent is committed

    sent = eventually(lambda: db.session.get_one(Order, entry.id).broker_order_id, "the entry to reach the broker")
    venue.execute(sent)  # Schwab: the market order fills now; paper and Coinbase filled it already

    def protected() -> Trade | None:
        """The entry filled and its stop working at the broker (Schwab answers a placement with
        SUBMITTED; the next tracking pass reads WORKING)."""
        trade = trade_of(trade_id)
        stop = protection.protective_order(trade)
        working = stop is not None and stop.status == OrderStatus.WORKING
        return trade if working and trade.protection_mode == ProtectionMode.NATIVE else None

    trade = eventually(protected, "the fill and the broker-held stop", nudge=track_orders.delay)
    stop = protection.protective_order(trade)
    assert trade.status == TradeStatus.OPEN and trade.filled_quantity == venue.quantity
    assert stop is not None and (stop.order_type, stop.quantity) == (NATIVE_STOP[venue.name], venue.quantity)
    assert stop.stop_price == trade.stop_loss_price and stop.broker_order_id is not None
    return trade


@pytest.mark.timeout(60)
def test_a_stopped_out_position_is_closed_once_through_the_worker(app: Flask, venue: Venue, worker: None) -> None:
    trade = enter_with_a_broker_stop(venue)
    trade_id = trade.id
    venue.breach(trade)
    exit_order = eventually(lambda: the_exit(trade_id), "the monitor's exit at the broker", nudge=stop_loss_cycle.delay)
    assert exit_order.broker_order_id is not None
    venue.execute(exit_order.broker_order_id)
    closed = eventually(lambda: closed_trade(trade_id), "the close", nudge=track_orders.delay)

    assert closed.filled_quantity == closed.exit_filled_quantity == venue.quantity
    assert trade_book.open_quantity(closed) == 0 and closed.closed_at is not None
    assert closed.realized_pnl == venue.expected_pnl(), "entry, exit and fees, as the broker booked them"
    assert closed.realized_pnl < 0 or venue.name == "paper", "a stop-out loses money"
    assert closed.fees > 0 or venue.name != "coinbase", "Coinbase's fees are part of the result"
    by_purpose = {o.purpose: o for o in orders_of(trade_id)}
    assert [o.purpose for o in orders_of(trade_id)] == [OrderPurpose.ENTRY, OrderPurpose.STOP_LOSS, OrderPurpose.EXIT]
    assert by_purpose[OrderPurpose.STOP_LOSS].status == OrderStatus.CANCELLED, "cancelled before the backstop exit"
    assert by_purpose[OrderPurpose.EXIT].status == OrderStatus.FILLED
    exit_fills = db.session.scalars(db.select(Fill).where(Fill.order_id == exit_order.id)).all()
    assert sum(f.quantity for f in exit_fills) == venue.quantity, "the exit's fills are recorded, once"
    assert venue.market_sells() == 1, "the broker received exactly one closing order"
    assert venue.sold() == venue.bought() == venue.quantity, "no oversell at the broker"
    closing = db.session.scalar(db.select(AuditLog).where(AuditLog.action == "order.exit"))
    assert closing is not None and closing.details["reason"].startswith("Monitor:"), "the monitor closed it"
    assert audit_trail() == [
        "order.create",
        "order.submitted",
        "protection.place",
        "order.submitted",
        "order.exit",
        "order.submitted",
    ]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("venue", ["schwab", "coinbase"], indirect=True)
def test_a_broker_stop_that_fired_first_is_never_sold_again(app: Flask, venue: Venue, worker: None) -> None:
    """LESSONS.md #2: the broker's stop and the monitor's backstop must never both sell."""
    app.config["STOP_MONITOR_INTERVAL"] = 3  # room to let the broker act inside the monitor's grace
    trade = enter_with_a_broker_stop(venue)
    trade_id, stop = trade.id, protection.protective_order(trade)
    assert stop is not None and stop.broker_order_id is not None
    venue.breach(trade)
    eventually(lambda: trade_of(trade_id).breached_at, "the monitor to see the breach", nudge=stop_loss_cycle.delay)
    venue.execute(stop.broker_order_id)  # the broker's stop fires inside the grace; nobody has polled it yet

    # No tracking pass runs: the monitor itself, stepping in after the grace, must find the stop filled.
    closed = eventually(lambda: closed_trade(trade_id), "the close", nudge=stop_loss_cycle.delay)
    runs = db.session.scalar(db.select(db.func.count()).select_from(MonitorRun)) or 0
    eventually(
        lambda: (db.session.scalar(db.select(db.func.count()).select_from(MonitorRun)) or 0) >= runs + 2,
        "two more monitor cycles",
        nudge=stop_loss_cycle.delay,
    )
    assert [(o.purpose, o.status) for o in orders_of(trade_id)] == [
        (OrderPurpose.ENTRY, OrderStatus.FILLED),
        (OrderPurpose.STOP_LOSS, OrderStatus.FILLED),
    ], "no backstop exit after the broker's stop filled"
    assert venue.market_sells() == 0
    assert venue.sold() == closed.exit_filled_quantity == venue.quantity, "no oversell at the broker"
    assert closed.realized_pnl == venue.expected_pnl()


def monitor_runs() -> int:
    """How many monitor passes have been recorded."""
    return db.session.scalar(db.select(db.func.count()).select_from(MonitorRun)) or 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("venue", ["coinbase"], indirect=True)
def test_an_emulated_trailing_stop_by_percent_follows_the_high_and_closes_once(
    app: Flask, venue: Venue, worker: None
) -> None:
    """Coinbase cannot trail: the monitor holds a 2% trailing stop, ratchets it up with the bid and
    closes the position with one market sell when the bid falls 2% under the high-water mark."""
    app.config["RISK_REQUIRE_STOP_LOSS"] = False
    entry = orders.place_order(venue.user, venue.ticket(stop_loss_price=None, trailing_stop_percent=Decimal(2)))
    trade_id = entry.trade_id
    assert trade_id is not None
    submit_order.delay(entry.id)

    def watched() -> Trade | None:
        trade = trade_of(trade_id)
        return trade if (trade.status, trade.protection_mode) == (TradeStatus.OPEN, ProtectionMode.EMULATED) else None

    trade = eventually(watched, "the fill, watched by the monitor", nudge=track_orders.delay)
    assert protection.protective_order(trade) is None, "no broker stop: Coinbase cannot trail"

    venue.fakes.coinbase.set_price(CRYPTO, "55000.00", "55010.00")  # a new high: the trail follows to 53900
    eventually(lambda: trade_of(trade_id).trail_anchor == Decimal(55000), "the anchor", nudge=stop_loss_cycle.delay)
    venue.fakes.coinbase.set_price(CRYPTO, "53900.01", "53910.00")  # a cent above the trailing stop
    runs = monitor_runs()
    eventually(lambda: monitor_runs() >= runs + 2, "two more monitor cycles", nudge=stop_loss_cycle.delay)
    assert [o.purpose for o in orders_of(trade_id)] == [OrderPurpose.ENTRY], "inside the trail: held"

    venue.fakes.coinbase.set_price(CRYPTO, "53900.00", "53910.00")  # 55000 * (1 - 2/100)
    eventually(lambda: the_exit(trade_id), "the monitor's exit at the broker", nudge=stop_loss_cycle.delay)
    closed = eventually(lambda: closed_trade(trade_id), "the close", nudge=track_orders.delay)
    assert [(o.purpose, o.status) for o in orders_of(trade_id)] == [
        (OrderPurpose.ENTRY, OrderStatus.FILLED),
        (OrderPurpose.EXIT, OrderStatus.FILLED),
    ]
    assert venue.market_sells() == 1 and venue.sold() == closed.exit_filled_quantity == venue.quantity
    assert closed.realized_pnl == venue.expected_pnl() and closed.realized_pnl > 0, "the trail locked in a gain"
    closing = db.session.scalar(db.select(AuditLog).where(AuditLog.action == "order.exit"))
    assert closing is not None and "crossed the trailing stop at 53900" in closing.details["reason"]
