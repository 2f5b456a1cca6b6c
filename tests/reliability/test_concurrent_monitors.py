"""REL-03 Concurrent monitors: eight monitor cycles at once close every breached position exactly once.

Each repetition funds several users' paper accounts at the broker, writes 500 open trades
(PostgreSQL; 60 on SQLite, which serialises writers anyway) whose emulated stop the market has
crossed, runs eight ``monitor.run_cycle`` at the same moment (one thread, app context and session
each), hands all eight cycles' breaches (each trade eight times) to ``monitor.close_breached`` from
eight threads at once, as eight workers draining the close tasks would, then sends every stored
exit the way the task does (``submit_order``), each one delivered
twice from concurrent threads as an ``acks_late`` redelivery would. Pass: every trade has exactly
one exit and is CLOSED, the paper broker received exactly one sell per trade and holds nothing
(no oversell), no cycle reported an error. ``scaled(ci=2, soak=20)`` repetitions.
"""

from __future__ import annotations

import queue
import uuid
from decimal import Decimal

import pytest
from flask import Flask

from models import BrokerConnection, MonitorRun, Order, PaperOrder, PaperPosition, Trade
from tests.scale import scaled
from tests.support import make_user
from tests.trading_support import CRYPTO, add_trade, close_concurrently, run_in_threads, stored_order
from utils.brokers.base import OrderRequest
from utils.enums import OrderPurpose, OrderSide, OrderStatus, OrderType, ProtectionMode, TradeStatus
from utils.extensions import db
from utils.services import connections, monitor
from utils.tasks.trading import submit_order

ACCOUNTS = 5
CYCLES = 8
LOT = Decimal("0.001")
REPETITIONS = scaled(ci=2, soak=20)


def breached_count() -> int:
    """500 positions where row locks exist (PostgreSQL); fewer on SQLite, which serialises writers."""
    return 500 if db.engine.dialect.name == "postgresql" else 60


def funded_account(number: int, lots: int) -> BrokerConnection:
    """A user's paper connection holding ``lots`` lots of BTC bought at the broker itself."""
    user = make_user(f"rel03-{number}@example.com")
    connection = connections.create_paper_connection(user, "REL-03", Decimal("1000000"))
    broker = connections.broker_for(connection)
    request = OrderRequest(CRYPTO, OrderSide.BUY, LOT * lots, OrderType.MARKET, client_order_id=uuid.uuid4().hex)
    bought = broker.place_order(connections.trading_account_id(connection), request)
    assert bought.status == OrderStatus.FILLED, bought
    return connection


def add_breached_trades(connection: BrokerConnection, lots: int) -> None:
    """``lots`` open one-lot trades, each with its filled entry and an emulated stop far above the bid."""
    bid = connections.broker_for(connection).quotes([CRYPTO])[CRYPTO].bid
    for _ in range(lots):
        trade = add_trade(
            connection.user,
            connection,
            status=TradeStatus.OPEN,
            quantity=LOT,
            filled_quantity=LOT,
            average_fill_price=bid,
            stop_loss_price=bid * 2,
            protection_mode=ProtectionMode.EMULATED,
        )
        stored_order(
            connection,
            CRYPTO,
            OrderPurpose.ENTRY,
            OrderStatus.FILLED,
            trade=trade,
            order_type=OrderType.MARKET,
            quantity=LOT,
            filled_quantity=LOT,
            remaining_quantity=Decimal(0),
            average_fill_price=bid,
            fees=Decimal(0),
        )
    db.session.commit()


def send_each_twice(app: Flask, exit_ids: list[int]) -> None:
    """Deliver every exit to ``submit_order`` twice, from concurrent threads (an acks_late redelivery)."""
    pending: queue.SimpleQueue[int] = queue.SimpleQueue()
    for order_id in exit_ids + exit_ids:
        pending.put(order_id)

    def drain() -> None:
        while True:
            try:
                order_id = pending.get_nowait()
            except queue.Empty:
                return
            outcome = submit_order.apply(args=(order_id,))
            assert outcome.successful(), outcome.traceback

    run_in_threads(app, CYCLES, drain)


def exits_per_trade() -> dict[int, int]:
    """How many EXIT orders each trade that has one got."""
    statement = (
        db.select(Order.trade_id, db.func.count()).where(Order.purpose == OrderPurpose.EXIT).group_by(Order.trade_id)
    )
    return dict(db.session.execute(statement).tuples().all())


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_eight_concurrent_monitor_cycles_close_every_breached_position_exactly_once(
    app: Flask, repetition: int
) -> None:
    breached = breached_count()
    lots = breached // ACCOUNTS
    for number in range(ACCOUNTS):
        add_breached_trades(funded_account(number, lots), lots)
    db.session.remove()

    results = run_in_threads(app, CYCLES, monitor.run_cycle)
    assert sum(result.errors for result in results) == 0
    handed_out = [breach for result in results for breach in result.to_close]
    assert len(handed_out) == CYCLES * breached, "every cycle sees every breach"
    exit_ids = close_concurrently(app, CYCLES, handed_out)
    assert len(exit_ids) == len(set(exit_ids)) == breached
    send_each_twice(app, exit_ids)

    db.session.expire_all()
    per_trade = exits_per_trade()
    assert len(per_trade) == breached and set(per_trade.values()) == {1}, "no trade gets a second exit"
    statuses = db.session.execute(db.select(Trade.status, db.func.count()).group_by(Trade.status)).tuples().all()
    assert dict(statuses) == {TradeStatus.CLOSED: breached}
    exit_statuses = db.session.scalars(db.select(Order.status).where(Order.purpose == OrderPurpose.EXIT))
    assert set(exit_statuses) == {OrderStatus.FILLED}
    sells = db.session.scalar(db.select(db.func.count()).where(PaperOrder.side == OrderSide.SELL))
    assert sells == breached, "the broker saw exactly one sell per position"
    held = db.session.scalars(db.select(PaperPosition.quantity).where(PaperPosition.symbol == CRYPTO))
    assert all(quantity == 0 for quantity in held), "nothing oversold, nothing left"
    assert db.session.scalar(db.select(db.func.count()).select_from(MonitorRun)) == CYCLES
