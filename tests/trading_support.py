"""Shared helpers for trading tests: tickets priced off the live paper quote, racing threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from flask import Flask

from models import BrokerConnection
from utils.enums import OrderSide
from utils.extensions import db
from utils.services import connections
from utils.services.order_tickets import OrderTicket

CRYPTO = "BTC-USD"


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
