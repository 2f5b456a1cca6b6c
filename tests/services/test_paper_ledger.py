"""The paper broker on the real database: state survives processes, sessions are serialised."""

from __future__ import annotations

import threading
from decimal import Decimal

from flask import Flask

from models import BrokerConnection, PaperAccount, PaperOrder, PaperPosition
from tests.support import make_user
from utils.brokers.base import OrderRequest
from utils.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from utils.extensions import db
from utils.services import connections

CRYPTO = "BTC-USD"


def order(side: OrderSide, quantity: str, client_order_id: str, **extra: object) -> OrderRequest:
    return OrderRequest(
        symbol=CRYPTO,
        side=side,
        quantity=Decimal(quantity),
        order_type=extra.pop("order_type", OrderType.MARKET),  # type: ignore[arg-type]
        client_order_id=client_order_id,
        time_in_force=TimeInForce.GTC,
        **extra,  # type: ignore[arg-type]
    )


def paper_connection() -> tuple[BrokerConnection, str]:
    connection = connections.create_paper_connection(make_user(), "Sandbox", Decimal("1000000"))
    key = db.session.scalar(db.select(PaperAccount.account_key).where(PaperAccount.connection_id == connection.id))
    return connection, key


def test_orders_fills_and_positions_are_persisted(app: Flask) -> None:
    connection, key = paper_connection()
    connection_id = connection.id
    placed = connections.broker_for(connection).place_order(key, order(OrderSide.BUY, "0.5", "c-1"))
    assert placed.status == OrderStatus.FILLED
    db.session.remove()  # a new process would start here
    broker = connections.broker_for(db.session.get(BrokerConnection, connection_id))
    again = broker.get_order(key, placed.broker_order_id)
    assert (again.filled_quantity, again.average_fill_price) == (Decimal("0.5"), placed.average_fill_price)
    assert [(p.symbol, p.quantity) for p in broker.positions(key)] == [(CRYPTO, Decimal("0.5"))]
    cash = db.session.scalar(db.select(PaperAccount.cash))
    assert cash == Decimal("1000000") - Decimal("0.5") * placed.average_fill_price
    row = db.session.scalar(db.select(PaperOrder))
    assert row.fills[0]["quantity"] == "0.5" and row.status == OrderStatus.FILLED


def test_a_duplicate_client_order_id_never_creates_a_second_order(app: Flask) -> None:
    connection, key = paper_connection()
    broker = connections.broker_for(connection)
    first = broker.place_order(key, order(OrderSide.BUY, "0.1", "same-id"))
    second = broker.place_order(key, order(OrderSide.BUY, "0.1", "same-id"))
    assert first.broker_order_id == second.broker_order_id
    assert db.session.scalar(db.select(db.func.count(PaperOrder.id))) == 1


def test_working_orders_survive_and_cancel_is_persisted(app: Flask) -> None:
    connection, key = paper_connection()
    broker = connections.broker_for(connection)
    resting = broker.place_order(
        key, order(OrderSide.BUY, "0.1", "low-bid", order_type=OrderType.LIMIT, limit_price=Decimal("1.00"))
    )
    assert resting.status == OrderStatus.WORKING
    connection_id = connection.id
    db.session.remove()
    broker = connections.broker_for(db.session.get(BrokerConnection, connection_id))
    broker.cancel_order(key, resting.broker_order_id)
    assert db.session.scalar(db.select(PaperOrder.status)) == OrderStatus.CANCELLED
    assert broker.list_orders(key, resting.entered_at, resting.entered_at)[0].status == OrderStatus.CANCELLED


def test_a_rejected_order_changes_nothing(app: Flask) -> None:
    connection, key = paper_connection()
    broker = connections.broker_for(connection)
    try:
        broker.place_order(key, order(OrderSide.SELL, "1", "sell-nothing"))
    except Exception as exc:  # noqa: BLE001 - asserting on the type below
        assert "more than you hold" in str(exc)
    assert db.session.scalar(db.select(db.func.count(PaperOrder.id))) == 0
    assert db.session.scalar(db.select(PaperAccount.cash)) == Decimal("1000000")


def test_concurrent_buyers_on_one_account_are_serialised(app: Flask) -> None:
    connection, key = paper_connection()
    connection_id = connection.id
    db.session.remove()
    errors: list[BaseException] = []

    def buy(n: int) -> None:
        with app.app_context():
            try:
                broker = connections.broker_for(db.session.get(BrokerConnection, connection_id))
                broker.place_order(key, order(OrderSide.BUY, "0.01", f"thread-{n}"))
            except BaseException as exc:  # noqa: BLE001 - reported through the list
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=buy, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    orders = list(db.session.scalars(db.select(PaperOrder)))
    spent = sum((Decimal(o.fills[0]["quantity"]) * Decimal(o.fills[0]["price"]) for o in orders), Decimal(0))
    assert len(orders) == 6
    assert db.session.scalar(db.select(PaperPosition.quantity)) == Decimal("0.06")
    assert db.session.scalar(db.select(PaperAccount.cash)) == Decimal("1000000") - spent
