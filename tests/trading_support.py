"""Shared helpers for trading tests: tickets priced off the live paper quote, racing threads."""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import Flask

from models import BrokerConnection, EquitySnapshot, Order, Trade, User
from utils.enums import OrderPurpose, OrderSide, OrderStatus, OrderType
from utils.extensions import db
from utils.services import connections
from utils.services.order_tickets import OrderTicket

CRYPTO = "BTC-USD"
_client_order_ids = itertools.count(1)


def ask(connection: BrokerConnection, symbol: str = CRYPTO) -> Decimal:
    return connections.broker_for(connection).quotes([symbol])[symbol].ask


def ticket(connection: BrokerConnection, **fields: Any) -> OrderTicket:
    """A small protected BTC buy: stop 5% under the ask."""
    price = ask(connection)
    base: dict[str, Any] = {
        "connection_id": connection.id,
        "symbol": CRYPTO,
        "side": OrderSide.BUY,
        "quantity": Decimal("0.01"),
        "stop_loss_price": (price * Decimal("0.95")).quantize(Decimal("0.01")),
    }
    return OrderTicket(**(base | fields))


def stored_order(
    connection: BrokerConnection, symbol: str, purpose: OrderPurpose, status: OrderStatus, **fields: Any
) -> Order:
    """An order row as the order service would leave it (a 1-unit buy limit unless told; flushed)."""
    row = Order(
        user_id=connection.user_id,
        connection_id=connection.id,
        client_order_id=f"test-{next(_client_order_ids)}",
        symbol=symbol,
        side=fields.pop("side", OrderSide.BUY),
        order_type=fields.pop("order_type", OrderType.LIMIT),
        purpose=purpose,
        status=status,
        quantity=fields.pop("quantity", Decimal(1)),
        **fields,
    )
    db.session.add(row)
    db.session.flush()
    return row


def add_trade(user: User, connection: BrokerConnection, **fields: Any) -> Trade:
    """A trade row written directly (2 BTC-USD bought at 100 unless ``fields`` say otherwise)."""
    values: dict[str, Any] = {
        "user_id": user.id,
        "connection_id": connection.id,
        "symbol": CRYPTO,
        "side": OrderSide.BUY,
        "trade_type": OrderType.MARKET,
        "quantity": Decimal(2),
        "filled_quantity": Decimal(2),
        "average_fill_price": Decimal(100),
    }
    trade = Trade(**(values | fields))
    db.session.add(trade)
    db.session.commit()
    return trade


def add_snapshot(user: User, connection: BrokerConnection, taken_at: datetime, equity: Decimal) -> EquitySnapshot:
    """An equity snapshot row (cash and buying power equal to the equity)."""
    row = EquitySnapshot(
        user_id=user.id,
        connection_id=connection.id,
        taken_at=taken_at,
        currency="USD",
        cash=equity,
        buying_power=equity,
        equity=equity,
    )
    db.session.add(row)
    db.session.commit()
    return row


def close_concurrently(app: Flask, n: int, breaches: list[Any]) -> list[int]:
    """Hand every breach (``monitor.Breach``) to ``monitor.close_breached`` from ``n`` threads at once,
    as ``n`` workers draining the queue of close tasks would. Returns the exits stored."""
    from utils.services import monitor

    pending: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for breach in breaches:
        pending.put(breach)

    def drain() -> list[int]:
        stored = []
        while True:
            try:
                breach = pending.get_nowait()
            except queue.Empty:
                return stored
            exit_id = monitor.close_breached(breach)
            if exit_id is not None:
                stored.append(exit_id)

    return [exit_id for stored in run_in_threads(app, n, drain) for exit_id in stored]


def run_in_threads(app: Flask, n: int, action: Callable[[], Any]) -> list[Any]:
    """Run ``action`` in ``n`` threads at once, each in its own app context and session."""
    results: list[Any] = []
    barrier = threading.Barrier(n)

    def run() -> None:
        with app.app_context():
            barrier.wait()
            try:
                results.append(action())
            except Exception as exc:  # noqa: BLE001 - collected and inspected by the test
                results.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    errors = [result for result in results if isinstance(result, Exception)]
    assert not errors, errors
    return results
