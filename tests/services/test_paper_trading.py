"""Background matching: resting paper orders advance without anyone touching the account."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from flask import Flask

from models import BrokerConnection, PaperAccount, PaperOrder
from tests.services.test_paper_ledger import CRYPTO, order
from tests.support import count_queries, make_user
from utils.brokers.base import BrokerOrder
from utils.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from utils.extensions import db
from utils.money import utcnow
from utils.services import connections, paper_ledger
from utils.services.paper_trading import MatchSummary, match_working_orders

LIQUIDITY = Decimal("0.1")


def paper_account(email: str) -> tuple[BrokerConnection, str]:
    connection = connections.create_paper_connection(make_user(email), "Sandbox", Decimal("1000000"))
    key = db.session.scalar(db.select(PaperAccount.account_key).where(PaperAccount.connection_id == connection.id))
    return connection, key


def place_large_limit_buy(app: Flask, connection: BrokerConnection, key: str) -> BrokerOrder:
    """A marketable limit buy of 3 x the per-pass liquidity: each pass fills one more third."""
    app.config["PAPER_LIQUIDITY_PER_TICK"] = LIQUIDITY
    broker = connections.broker_for(connection)
    limit = (broker.quotes([CRYPTO])[CRYPTO].ask * 2).quantize(Decimal("0.01"))  # stays marketable
    placed = broker.place_order(
        key, order(OrderSide.BUY, "0.3", "big-buy", order_type=OrderType.LIMIT, limit_price=limit)
    )
    assert (placed.status, placed.filled_quantity) == (OrderStatus.PARTIALLY_FILLED, LIQUIDITY)
    return placed


def add_unreadable_working_order(connection: BrokerConnection) -> None:
    """A working order whose stored fills cannot be read: every session of its account fails."""
    account_id = db.session.scalar(db.select(PaperAccount.id).where(PaperAccount.connection_id == connection.id))
    db.session.add(
        PaperOrder(
            account_id=account_id,
            order_key="broken-order",
            client_order_id="broken",
            symbol=CRYPTO,
            side=OrderSide.BUY,
            order_type=OrderType.MARKET,
            time_in_force=TimeInForce.GTC,
            status=OrderStatus.WORKING,
            quantity=Decimal("1"),
            filled_quantity=Decimal("0.5"),
            fills=[{"not": "a fill"}],
            created_at=utcnow(),
        )
    )
    db.session.commit()


def filled_quantity(order_key: str) -> Decimal:
    db.session.rollback()  # read what the matching sessions committed
    return db.session.scalar(db.select(PaperOrder.filled_quantity).where(PaperOrder.order_key == order_key))


def test_only_accounts_with_working_orders_are_selected_in_one_query(app: Flask) -> None:
    paper_account("idle@example.com")
    done, done_key = paper_account("done@example.com")
    connections.broker_for(done).place_order(done_key, order(OrderSide.BUY, "0.01", "filled-at-once"))
    resting, resting_key = paper_account("resting@example.com")
    connections.broker_for(resting).place_order(
        resting_key, order(OrderSide.BUY, "0.01", "low-bid", order_type=OrderType.LIMIT, limit_price=Decimal("1.00"))
    )
    selected: list[BrokerConnection] = []
    queries = count_queries(lambda: selected.extend(paper_ledger.paper_connections_with_working_orders()))
    assert [connection.id for connection in selected] == [resting.id]
    assert queries == 1


def test_a_pass_advances_resting_orders_and_skips_a_broken_account(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    broken, _ = paper_account("broken@example.com")  # first in line: the others must still be matched
    add_unreadable_working_order(broken)
    connection, key = paper_account("trader@example.com")
    placed = place_large_limit_buy(app, connection, key)
    broken_id = broken.id
    db.session.remove()

    assert match_working_orders() == MatchSummary(accounts=2, matched=1, failed=1)
    assert filled_quantity(placed.broker_order_id) == 2 * LIQUIDITY

    failure = [json.loads(line) for line in capsys.readouterr().err.splitlines() if "paper.match_failed" in line]
    assert len(failure) == 1
    assert failure[0]["connection_id"] == broken_id and failure[0]["level"] == "error"
    assert "KeyError" in failure[0]["exception"]

    assert match_working_orders() == MatchSummary(accounts=2, matched=1, failed=1)
    db.session.rollback()
    row = db.session.scalar(db.select(PaperOrder).where(PaperOrder.order_key == placed.broker_order_id))
    assert (row.status, row.filled_quantity) == (OrderStatus.FILLED, 3 * LIQUIDITY)
    assert [c.id for c in paper_ledger.paper_connections_with_working_orders()] == [broken_id]
