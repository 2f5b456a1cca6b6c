"""The order gateway on the paper broker and the real database: intent first, sent once, tracked."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.exc import IntegrityError

from models import AuditLog, BrokerConnection, Fill, Notification, Order, PaperOrder, Trade, User
from tests.support import make_user
from tests.trading_support import CRYPTO, ask, run_in_threads, ticket
from utils.enums import OrderPurpose, OrderSide, OrderStatus, OrderType, TradeStatus
from utils.exceptions import ConflictError, IllegalTransitionError, InvalidInputError, RiskLimitExceededError
from utils.extensions import db
from utils.services import order_states, order_tracking, orders, trade_book


def audit_actions() -> list[str]:
    return list(db.session.scalars(db.select(AuditLog.action).order_by(AuditLog.id)))


def count(model: type) -> int:
    return db.session.scalar(db.select(db.func.count()).select_from(model)) or 0


def test_an_entry_is_stored_first_then_sent_once_and_fills_the_trade(trader: User, paper: BrokerConnection) -> None:
    order = orders.place_order(trader, ticket(paper))
    assert (order.status, order.purpose, order.trade.status) == (
        OrderStatus.PENDING_SUBMIT,
        OrderPurpose.ENTRY,
        TradeStatus.PENDING,
    )
    assert count(PaperOrder) == 0, "nothing reaches the broker before the worker sends it"
    sent = orders.submit(order.id)
    assert sent is not None and sent.status == OrderStatus.FILLED and sent.broker_order_id
    assert orders.submit(order.id) is None, "a second submit (a retried task) sends nothing"
    assert count(PaperOrder) == 1
    trade = sent.trade
    assert (trade.status, trade.filled_quantity) == (TradeStatus.OPEN, Decimal("0.01"))
    assert trade.average_fill_price == sent.average_fill_price and trade.opened_at is not None
    assert [fill.quantity for fill in sent.fills] == [Decimal("0.01")]
    assert audit_actions()[-2:] == ["order.create", "order.submitted"]


def test_closing_a_trade_realises_pnl_with_fees(app: Flask, trader: User, paper: BrokerConnection) -> None:
    app.config["PAPER_COMMISSION_MINIMUM"] = Decimal("1.25")
    entry = orders.submit(orders.place_order(trader, ticket(paper)).id)
    assert entry is not None
    exit_order = orders.close_trade(entry.trade, "manual close", actor=trader)
    assert exit_order is not None and entry.trade.status == TradeStatus.CLOSING
    assert orders.close_trade(entry.trade, "again") is None, "one live exit per trade"
    closed = orders.submit(exit_order.id)
    assert closed is not None and closed.status == OrderStatus.FILLED and closed.side == OrderSide.SELL
    trade = closed.trade
    assert trade.status == TradeStatus.CLOSED and trade.closed_at is not None
    assert trade.fees == Decimal("2.50")
    expected = (closed.average_fill_price - entry.average_fill_price) * Decimal("0.01") - Decimal("2.50")
    assert trade.realized_pnl == expected and trade.close_price == closed.average_fill_price
    assert trade_book.open_quantity(trade) == 0


def test_concurrent_closes_create_exactly_one_exit(app: Flask, trader: User, paper: BrokerConnection) -> None:
    entry = orders.submit(orders.place_order(trader, ticket(paper)).id)
    assert entry is not None
    trade_id = entry.trade_id
    db.session.remove()
    results = run_in_threads(app, 8, lambda: orders.close_trade(db.session.get_one(Trade, trade_id), "race"))
    assert sum(result is not None for result in results) == 1
    exits = db.session.scalars(db.select(Order).where(Order.purpose == OrderPurpose.EXIT)).all()
    assert len(exits) == 1


def test_the_database_refuses_a_second_live_exit_whoever_writes_it(trader: User, paper: BrokerConnection) -> None:
    entry = orders.submit(orders.place_order(trader, ticket(paper)).id)
    assert entry is not None and orders.close_trade(entry.trade, "first") is not None
    rogue = Order(
        user_id=trader.id,
        connection_id=paper.id,
        trade_id=entry.trade_id,
        client_order_id="rogue",
        purpose=OrderPurpose.STOP_LOSS,
        symbol=CRYPTO,
        side=OrderSide.SELL,
        order_type=OrderType.STOP,
        quantity=Decimal("0.01"),
    )
    db.session.add(rogue)
    with pytest.raises(IntegrityError, match=r"(?i)unique"):
        db.session.commit()
    db.session.rollback()


def test_the_same_idempotency_key_gives_the_same_order_and_a_different_body_conflicts(
    trader: User, paper: BrokerConnection
) -> None:
    request = ticket(paper, idempotency_key="abc-1")  # once: the stop is priced off the moving market
    first = orders.place_order(trader, request)
    again = orders.place_order(trader, request)
    assert again.id == first.id
    with pytest.raises(ConflictError, match="already used for a different order"):
        orders.place_order(trader, dataclasses.replace(request, quantity=Decimal("0.02")))
    assert count(Order) == 1


def test_a_trailing_entry_by_percent_is_stored_and_sent_by_percent(trader: User, paper: BrokerConnection) -> None:
    request = ticket(
        paper,
        order_type=OrderType.TRAILING_STOP,
        trail_percent=Decimal("2.5"),
        trailing_stop_percent=Decimal(4),
        idempotency_key="trail-pct",
    )
    order = orders.place_order(trader, request)
    assert (order.trail_offset, order.trail_percent) == (None, Decimal("2.5"))
    assert (order.trade.trailing_stop_offset, order.trade.trailing_stop_percent) == (None, Decimal(4))
    sent = orders.submit(order.id)
    assert sent is not None and sent.status == OrderStatus.WORKING, "a buy trailing 2.5% over the ask waits"
    at_broker = db.session.scalars(db.select(PaperOrder)).one()
    assert (at_broker.trail_offset, at_broker.trail_percent) == (None, Decimal("2.5"))


def test_the_same_idempotency_key_with_another_trail_percent_conflicts(trader: User, paper: BrokerConnection) -> None:
    request = ticket(paper, trailing_stop_percent=Decimal(3), idempotency_key="pct-key")
    first = orders.place_order(trader, request)
    db.session.expire_all()  # compare with what the database stored, not with the objects in memory
    assert orders.place_order(trader, request).id == first.id
    with pytest.raises(ConflictError, match="already used for a different order"):
        orders.place_order(trader, dataclasses.replace(request, trailing_stop_percent=Decimal("3.5")))
    with pytest.raises(ConflictError):
        orders.place_order(trader, dataclasses.replace(request, trailing_stop_percent=None))
    assert count(Order) == 1


def test_concurrent_requests_with_one_key_store_one_order(app: Flask, trader: User, paper: BrokerConnection) -> None:
    request = ticket(paper, idempotency_key="same-key")
    user_id = trader.id
    db.session.remove()
    results = run_in_threads(app, 8, lambda: orders.place_order(db.session.get_one(User, user_id), request).id)
    assert len(set(results)) == 1 and count(Order) == 1 and count(Trade) == 1


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"symbol": "not a symbol"}, "symbol", "Enter a symbol"),
        ({"quantity": Decimal(0)}, "quantity", "above 0"),
        ({"quantity": Decimal("NaN")}, "quantity", "above 0"),
        ({"quantity": Decimal("0.000000001")}, "quantity", "decimal places"),
        ({"side": OrderSide.SELL}, "side", "close a position"),
        ({"order_type": OrderType.LIMIT}, "limit_price", "needs a limit price"),
        ({"order_type": OrderType.STOP_LIMIT, "stop_price": Decimal(1)}, "limit_price", "needs a limit price"),
        ({"take_profit_price": Decimal(1)}, "take_profit_price", "other side"),
        ({"idempotency_key": "k" * 129}, "idempotency_key", "at most 128"),
        ({"order_type": OrderType.TRAILING_STOP}, "trail_offset", "needs a trail amount or a trail percent"),
        (
            {"order_type": OrderType.TRAILING_STOP, "trail_offset": Decimal(1), "trail_percent": Decimal(5)},
            "trail_percent",
            "trail amount or a trail percent, not both",
        ),
        ({"trail_percent": Decimal(100)}, "trail_percent", "below 100"),
        ({"trail_percent": Decimal("-2")}, "trail_percent", "above 0"),
        (
            {"trailing_stop_offset": Decimal(1), "trailing_stop_percent": Decimal(5)},
            "trailing_stop_percent",
            "trailing stop amount or a trailing stop percent, not both",
        ),
        ({"trailing_stop_percent": Decimal(0)}, "trailing_stop_percent", "above 0"),
        ({"trailing_stop_percent": Decimal("100.5")}, "trailing_stop_percent", "below 100"),
    ],
)
def test_bad_input_is_refused_with_the_field_and_nothing_is_stored(
    trader: User, paper: BrokerConnection, fields: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message) as caught:
        orders.place_order(trader, ticket(paper, **fields))
    assert caught.value.details["field"] == field
    assert count(Order) == count(Trade) == 0


@pytest.mark.parametrize("extra", ["0.005", "0.00000001"])
def test_an_entry_stop_off_the_price_increment_is_refused_before_anything_is_stored(
    trader: User, paper: BrokerConnection, extra: str
) -> None:
    """The paper broker takes cents: a finer stop-loss would be refused once the entry filled."""
    stop = (ask(paper) * Decimal("0.95")).quantize(Decimal("0.01")) + Decimal(extra)
    with pytest.raises(InvalidInputError, match=r"prices move in steps of 0\.01") as caught:
        orders.place_order(trader, ticket(paper, stop_loss_price=stop))
    assert caught.value.details["field"] == "stop_loss_price"
    trailing = {"stop_loss_price": None, "trailing_stop_offset": Decimal(100) + Decimal(extra)}
    with pytest.raises(InvalidInputError, match=r"prices move in steps of 0\.01") as caught:
        orders.place_order(trader, ticket(paper, **trailing))
    assert caught.value.details["field"] == "trailing_stop_offset"
    assert count(Order) == count(Trade) == 0 and count(PaperOrder) == 0


def test_a_risk_rejection_stores_nothing_and_is_audited(trader: User, paper: BrokerConnection) -> None:
    with pytest.raises(RiskLimitExceededError):
        orders.place_order(trader, ticket(paper, stop_loss_price=None))
    assert count(Order) == count(Trade) == 0 and count(PaperOrder) == 0
    assert "risk.rejected" in audit_actions()
    told = db.session.scalar(db.select(Notification).where(Notification.kind == "risk_rejected"))
    assert told is not None and told.user_id == trader.id and "stop-loss" in told.message.lower()


def test_another_users_connection_cannot_be_used(trader: User, paper: BrokerConnection) -> None:
    other = make_user("other@example.com")
    with pytest.raises(Exception, match="No such connection"):
        orders.place_order(other, ticket(paper))
    assert count(Order) == 0


def test_a_resting_order_is_tracked_to_its_fills_then_cancelled(
    app: Flask, trader: User, paper: BrokerConnection
) -> None:
    app.config["PAPER_LIQUIDITY_PER_TICK"] = Decimal("0.01")
    limit = (ask(paper) * Decimal("1.01")).quantize(Decimal("0.01"))  # marketable, but only 0.01 per pass
    order = orders.place_order(
        trader, ticket(paper, quantity=Decimal("0.05"), order_type=OrderType.LIMIT, limit_price=limit)
    )
    sent = orders.submit(order.id)
    assert sent is not None and sent.status == OrderStatus.PARTIALLY_FILLED
    assert sent.trade.status == TradeStatus.PARTIALLY_FILLED and sent.trade.filled_quantity == Decimal("0.01")
    report = order_tracking.track_all()
    assert (report.connections, report.orders, report.changed) == (1, 1, 1)
    db.session.expire_all()
    tracked = db.session.get_one(Order, order.id)
    assert tracked.filled_quantity == Decimal("0.02") and len(tracked.fills) == 2
    cancelled = order_tracking.cancel_order(trader, order.id)  # the paper broker matches once more first
    assert cancelled.status == OrderStatus.CANCELLED
    trade = cancelled.trade
    assert (trade.status, trade.filled_quantity, trade.remaining_quantity) == (
        TradeStatus.OPEN,
        Decimal("0.03"),
        Decimal(0),
    )
    assert order_tracking.track_all().orders == 0, "nothing live is left to follow"
    assert count(Fill) == 3, "fills seen on several passes are recorded once"


def test_an_unsent_order_is_cancelled_without_a_broker_call(trader: User, paper: BrokerConnection) -> None:
    order = orders.place_order(trader, ticket(paper))
    cancelled = order_tracking.cancel_order(trader, order.id)
    assert cancelled.status == OrderStatus.CANCELLED and cancelled.trade.status == TradeStatus.CANCELLED
    assert orders.submit(order.id) is None and count(PaperOrder) == 0


def test_a_terminal_order_cannot_move_again(trader: User, paper: BrokerConnection) -> None:
    order = orders.submit(orders.place_order(trader, ticket(paper)).id)
    assert order is not None
    with pytest.raises(IllegalTransitionError):
        order_states.move(order, OrderStatus.WORKING)
    with pytest.raises(Exception, match="already filled"):
        order_tracking.cancel_order(trader, order.id)


def test_a_lost_submit_task_is_found_and_resent(trader: User, paper: BrokerConnection) -> None:
    order = orders.place_order(trader, ticket(paper))
    assert orders.waiting_to_be_sent() == []
    order.created_at = order.created_at - orders.RESEND_TASK_AFTER
    db.session.commit()
    assert orders.waiting_to_be_sent() == [order.id]
