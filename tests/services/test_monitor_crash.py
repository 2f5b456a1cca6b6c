"""A worker killed in the middle of a stop-loss close: the next passes finish it, exactly once.

Each test rebuilds the database (and broker) state a worker leaves when it dies at one point of
the close, on the paper broker and the Schwab and Coinbase fakes:

(a) after the monitor stored the exit intent, before ``submit_order`` was enqueued;
(b) after the submit task claimed the exit (SUBMITTED), before it called the broker;
(c) after the broker accepted the exit, before the answer was recorded.

Then the beat tasks (run eagerly, in this thread) take over: ``trading.track_orders`` and
``monitoring.stop_loss_cycle``. Time passes by editing created_at/submitted_at/breached_at, never by
sleeping. Whatever happened, the broker receives one closing order and sells exactly what was bought.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask

from models import AuditLog, Fill, Order, Trade
from tests.support import make_user
from tests.venues import VENUES, Fakes, Venue, open_venue, orders_of, running_fakes, trade_of
from utils.enums import EXIT_PURPOSES, OrderPurpose, OrderStatus, ProtectionMode, TradeStatus
from utils.extensions import db
from utils.money import utcnow
from utils.services import connections, monitor, order_states, order_tracking, orders, protection, trade_book
from utils.tasks.monitoring import stop_loss_cycle
from utils.tasks.trading import submit_order, track_orders

ONE_SECOND = timedelta(seconds=1)


@pytest.fixture()
def fakes() -> Iterator[Fakes]:
    with running_fakes() as running:
        yield running


@pytest.fixture()
def environ(environ: dict[str, str], fakes: Fakes) -> dict[str, str]:
    return environ | fakes.environ() | {"STOP_MONITOR_INTERVAL": "1"}


@pytest.fixture()
def eager(app: Flask) -> None:
    """Tasks run in this thread when enqueued (each in its own app context and session, as in a worker)."""
    app.extensions["celery"].conf.update(task_always_eager=True, task_eager_propagates=True)


@pytest.fixture(params=VENUES)
def venue(request: pytest.FixtureRequest, app: Flask, fakes: Fakes, eager: None) -> Venue:
    return open_venue(request.param, fakes, make_user())


# ---------------------------------------------------------------------------------- passes


def tracking_pass() -> None:
    """What Celery Beat runs every few seconds: resend lost intents, follow orders, watchdog."""
    track_orders.delay()
    db.session.expire_all()


def monitor_pass() -> None:
    """What Celery Beat runs every STOP_MONITOR_INTERVAL: the cycle, then the sends it decides."""
    stop_loss_cycle.delay()
    db.session.expire_all()


def exits_of(trade_id: int) -> list[Order]:
    return [o for o in orders_of(trade_id) if o.purpose == OrderPurpose.EXIT]


def shift(row: Order | Trade, field: str, by: timedelta) -> None:
    """Move a stored time into the past: as if ``by`` had passed since it was written."""
    setattr(row, field, getattr(row, field) - by)
    db.session.commit()


def open_protected_trade(venue: Venue) -> Trade:
    """An entry sent by the submit task, filled at the broker, with its stop held by the broker."""
    entry = orders.place_order(venue.user, venue.ticket())
    submit_order.delay(entry.id)
    db.session.expire_all()
    assert entry.broker_order_id is not None
    venue.execute(entry.broker_order_id)
    tracking_pass()  # the fill is read and the broker stop placed (paper: both happened on submit)
    tracking_pass()  # Schwab answers a placement with SUBMITTED: now the stop reads WORKING
    trade = trade_of(entry.trade_id or 0)
    stop = protection.protective_order(trade)
    assert trade.status == TradeStatus.OPEN and trade.protection_mode == ProtectionMode.NATIVE
    assert stop is not None and stop.status == OrderStatus.WORKING
    return trade


def exit_stored_by_a_dying_monitor(venue: Venue, trade: Trade) -> Order:
    """The market crosses the protection; the monitor cycle hands the breach out, the close (the
    service, as its task runs it) stores the exit, and the worker dies before it enqueues
    ``submit_order``: kill point (a)."""
    venue.breach(trade)
    for _ in range(3):
        result = monitor.run_cycle()
        exit_ids = [exit_id for breach in result.to_close if (exit_id := monitor.close_breached(breach))]
        if exit_ids:
            [exit_id] = exit_ids
            exit_order = db.session.get_one(Order, exit_id)
            assert exit_order.status == OrderStatus.PENDING_SUBMIT
            assert trade_of(trade.id).status == TradeStatus.CLOSING
            return exit_order
        shift(trade_of(trade.id), "breached_at", ONE_SECOND)  # the broker's grace for its own stop passes
    raise AssertionError("the monitor never closed the breached trade")


def claim_like_the_dying_sender(exit_order: Order) -> None:
    """What ``orders.submit`` commits before it calls the broker: PENDING_SUBMIT → SUBMITTED."""
    order_states.move(exit_order, OrderStatus.SUBMITTED)
    exit_order.submitted_at = utcnow()
    db.session.commit()


def drive_until_closed(venue: Venue, trade_id: int, rounds: int = 5) -> Trade:
    """Beat keeps running: monitor and tracking passes, the broker executing what rests, time passing."""
    for _ in range(rounds):
        if trade_of(trade_id).status == TradeStatus.CLOSED:
            break
        monitor_pass()
        for order in exits_of(trade_id):
            if order.broker_order_id and order_states.is_live(OrderStatus(order.status)):
                venue.execute(order.broker_order_id)
        tracking_pass()
        if (trade := trade_of(trade_id)).breached_at is not None:
            shift(trade, "breached_at", ONE_SECOND)
    return trade_of(trade_id)


def assert_closed_exactly_once(venue: Venue, trade_id: int) -> None:
    """Closed, once, at the broker and here; and more passes change nothing."""
    trade = trade_of(trade_id)
    assert trade.status == TradeStatus.CLOSED, (trade.status, [(o.purpose, o.status) for o in trade.orders])
    assert trade.filled_quantity == trade.exit_filled_quantity == venue.quantity
    assert trade_book.open_quantity(trade) == 0
    filled_exits = [o for o in trade.orders if o.purpose in EXIT_PURPOSES and o.filled_quantity > 0]
    assert len(filled_exits) == 1 and filled_exits[0].filled_quantity == venue.quantity
    assert venue.market_sells() == 1, "the broker received exactly one closing order"
    assert venue.sold() == venue.bought() == venue.quantity, "no oversell at the broker"
    assert trade.realized_pnl == venue.expected_pnl()
    fills = db.session.scalars(db.select(Fill).where(Fill.order_id == filled_exits[0].id)).all()
    assert sum(f.quantity for f in fills) == venue.quantity, "the exit's fills are recorded"
    orders_before = len(trade.orders)
    monitor_pass()
    tracking_pass()
    assert len(orders_of(trade_id)) == orders_before and venue.market_sells() == 1
    assert trade_of(trade_id).status == TradeStatus.CLOSED


# ---------------------------------------------------------------------------------- kill points


def test_a_killed_after_the_exit_was_stored_it_is_sent_once_by_a_later_pass(venue: Venue) -> None:
    trade = open_protected_trade(venue)
    exit_order = exit_stored_by_a_dying_monitor(venue, trade)
    monitor_pass()
    tracking_pass()
    assert exits_of(trade.id) == [exit_order], "a closing trade is not closed again"
    assert exit_order.status == OrderStatus.PENDING_SUBMIT and venue.market_sells() == 0, "not yet: its task may run"
    assert orders.waiting_to_be_sent() == []

    shift(exit_order, "created_at", orders.RESEND_TASK_AFTER + ONE_SECOND)
    assert orders.waiting_to_be_sent() == [exit_order.id]
    tracking_pass()  # the lost intent is found and sent
    assert exit_order.broker_order_id is not None and venue.market_sells() == 1
    submit_order.delay(exit_order.id)  # the dead worker's message, redelivered (acks_late): sends nothing
    assert venue.market_sells() == 1

    drive_until_closed(venue, trade.id)
    assert exits_of(trade.id) == [exit_order]
    assert_closed_exactly_once(venue, trade.id)


def test_b_killed_after_the_claim_the_exit_is_given_up_and_the_close_redone_once(venue: Venue) -> None:
    trade = open_protected_trade(venue)
    first = exit_stored_by_a_dying_monitor(venue, trade)
    claim_like_the_dying_sender(first)

    tracking_pass()
    assert first.status == OrderStatus.SUBMITTED, "within the send grace the sender may still be working"
    shift(first, "submitted_at", order_tracking.send_grace())
    tracking_pass()
    assert first.status == OrderStatus.UNKNOWN, "the sender died: looked up at the broker, not resent"
    monitor_pass()
    assert exits_of(trade.id) == [first] and trade_of(trade.id).status == TradeStatus.CLOSING
    assert venue.market_sells() == 0

    shift(first, "submitted_at", order_tracking.give_up_after())
    tracking_pass()
    assert first.status == OrderStatus.REJECTED and "no record" in first.status_detail
    again = trade_of(trade.id)
    assert len(exits_of(trade.id)) == 2, "the pass that gave the exit up closes again at once, not a cycle later"
    assert protection.protective_order(again) is None, (
        "no broker stop is re-placed under a breach being closed: it would only race the exit"
    )

    closed = drive_until_closed(venue, trade.id)
    assert [o.status for o in exits_of(closed.id)] == [OrderStatus.REJECTED, OrderStatus.FILLED]
    assert_closed_exactly_once(venue, trade.id)


def test_c_killed_after_the_broker_accepted_the_exit_it_is_found_and_applied_not_resent(venue: Venue) -> None:
    trade = open_protected_trade(venue)
    exit_order = exit_stored_by_a_dying_monitor(venue, trade)
    claim_like_the_dying_sender(exit_order)
    broker = connections.broker_for(venue.connection)
    accepted = broker.place_order(venue.account(), orders.request_for(exit_order))  # its answer is lost
    assert venue.market_sells() == 1

    monitor_pass()
    tracking_pass()
    assert exits_of(trade.id) == [exit_order], "the monitor never places a second exit"
    assert (exit_order.status, exit_order.broker_order_id) == (OrderStatus.SUBMITTED, None)
    shift(exit_order, "submitted_at", order_tracking.send_grace() + ONE_SECOND)
    tracking_pass()  # looked up: by client order id (paper, Coinbase) or by shape and time (Schwab)
    assert exit_order.broker_order_id == accepted.broker_order_id
    assert exit_order.status in (OrderStatus.WORKING, OrderStatus.FILLED)
    reconciled = db.session.scalars(db.select(AuditLog.action).where(AuditLog.action == "order.reconciled")).all()
    assert reconciled == ["order.reconciled"]

    drive_until_closed(venue, trade.id)
    assert exits_of(trade.id) == [exit_order]
    assert_closed_exactly_once(venue, trade.id)
