"""A halt stops entries already accepted: queued ones are cancelled, a claimed one is refused at the
send, working ones are cancelled at the broker on request; exits always go through."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from flask import Flask

from models import AuditLog, BrokerConnection, Notification, Order, PaperOrder, User
from tests.support import make_user
from tests.trading_support import ask, ticket
from utils.enums import OrderStatus, OrderType, Role, TradingState
from utils.extensions import db
from utils.services import connections, execution, kill_switch, orders, positions, trading_state
from utils.tasks import trading as trading_tasks


def at_broker(order: Order) -> int:
    """How many orders the paper broker holds under this order's client order id."""
    statement = db.select(db.func.count(PaperOrder.id)).where(PaperOrder.client_order_id == order.client_order_id)
    return int(db.session.scalar(statement) or 0)


def reloaded(order: Order) -> Order:
    db.session.expire_all()
    return db.session.get_one(Order, order.id)


def notices(user: User, kind: str) -> list[str]:
    statement = db.select(Notification.message).where(Notification.user_id == user.id, Notification.kind == kind)
    return list(db.session.scalars(statement))


def resting_limit_entry(paper: BrokerConnection) -> Order:
    """A buy limit 10% under the market, sent: WORKING at the paper broker."""
    price = ask(paper)
    limit = (price * Decimal("0.9")).quantize(Decimal("0.01"))
    stop = (price * Decimal("0.85")).quantize(Decimal("0.01"))
    entry = orders.place_order(
        paper.user, ticket(paper, order_type=OrderType.LIMIT, limit_price=limit, stop_loss_price=stop)
    )
    execution.send(entry.id)
    assert reloaded(entry).status == OrderStatus.WORKING
    return entry


def test_halt_cancels_queued_entries_and_a_worker_never_sends_them(
    app: Flask, trader: User, paper: BrokerConnection
) -> None:
    held = orders.place_order(trader, ticket(paper))
    execution.send(held.id)  # filled and protected
    queued_exit = positions.close_position(trader, held.trade_id)
    entry = orders.place_order(trader, ticket(paper))
    assert entry.status == queued_exit.status == OrderStatus.PENDING_SUBMIT

    result = app.test_cli_runner().invoke(args=["trading", "halt", "--reason", "exchange outage"])

    assert result.exit_code == 0 and "1 queued entry order(s) cancelled." in result.output, result.output
    cancelled = reloaded(entry)
    assert cancelled.status == OrderStatus.CANCELLED
    assert cancelled.status_detail == "Cancelled before it was sent: trading halted (exchange outage)"
    assert cancelled.trade is not None and cancelled.trade.status.value == "cancelled"
    audit = db.session.scalar(db.select(AuditLog).where(AuditLog.action == "order.cancel"))
    assert audit is not None and audit.details == {"sent": False, "reason": "trading halted (exchange outage)"}
    assert notices(trader, "entries_cancelled") == [
        "1 entry order(s) waiting to be sent were cancelled: trading halted (exchange outage)"
    ]
    execution.send(entry.id)  # the task that was already in the queue
    assert at_broker(entry) == 0, "the cancelled entry never reaches the broker"
    assert reloaded(queued_exit).status == OrderStatus.PENDING_SUBMIT, "exits are not cancelled"
    execution.send(queued_exit.id)
    assert reloaded(queued_exit).broker_order_id is not None, "exits are still sent while halted"


def _platform(state: TradingState) -> Callable[[User, BrokerConnection], None]:
    return lambda user, connection: trading_state.set_global_trading_state(None, state, "outage", source="cli")


def _user_halted(user: User, connection: BrokerConnection) -> None:
    trading_state.set_user_trading_state(None, user, TradingState.HALTED, "outage")


def _connection_held(user: User, connection: BrokerConnection) -> None:
    connection.reconcile_hold_reason = "outage"
    db.session.commit()


@pytest.mark.parametrize(
    ("restrict", "reason"),
    [
        (_platform(TradingState.HALTED), "Trading is halted platform-wide (outage)."),
        (_platform(TradingState.REDUCING), "Trading is in reduce-only mode platform-wide (outage)."),
        (_user_halted, "Trading is halted for your account (outage)."),
        (_connection_held, "Trading on this broker account is in reduce-only mode (outage)."),
    ],
    ids=["platform-halted", "platform-reducing", "user-halted", "connection-held"],
)
def test_an_entry_claimed_after_trading_was_restricted_is_refused_not_sent(
    trader: User, paper: BrokerConnection, restrict: Callable[[User, BrokerConnection], None], reason: str
) -> None:
    entry = orders.place_order(trader, ticket(paper))
    restrict(trader, paper)  # the state alone, as if the halt landed between its cancel pass and this claim

    execution.send(entry.id)

    refused = reloaded(entry)
    assert refused.status == OrderStatus.REJECTED and refused.status_detail is not None
    assert refused.status_detail.startswith(reason)
    assert at_broker(entry) == 0, "nothing was sent"
    audit = db.session.scalar(db.select(AuditLog).where(AuditLog.action == "order.rejected"))
    assert audit is not None and audit.details["detail"].startswith(reason[:40])
    assert [message for message in notices(trader, "order_rejected") if reason in message]


def test_resuming_lets_the_next_entries_through(trader: User, paper: BrokerConnection) -> None:
    kill_switch.set_user_state(None, trader, TradingState.HALTED, "review")
    kill_switch.set_user_state(None, trader, TradingState.ACTIVE)
    entry = orders.place_order(trader, ticket(paper))
    execution.send(entry.id)
    assert reloaded(entry).status == OrderStatus.FILLED and at_broker(entry) == 1


def test_cancelling_working_entries_reaches_the_broker_and_spares_exits_and_other_users(
    trader: User, paper: BrokerConnection
) -> None:
    resting = resting_limit_entry(paper)
    filled = orders.place_order(trader, ticket(paper))
    execution.send(filled.id)  # fills at once; its protective stop rests at the broker as an exit
    stop = db.session.scalar(db.select(Order).where(Order.trade_id == filled.trade_id, Order.id != filled.id))
    assert stop is not None and stop.status == OrderStatus.WORKING
    other = make_user("other@example.com")
    others = resting_limit_entry(connections.create_paper_connection(other, "Other", Decimal("1000000")))

    admin = make_user("root@example.com", Role.SUPERADMIN)
    restriction = kill_switch.set_user_state(admin, trader, TradingState.HALTED, "margin review")
    trading_tasks.cancel_working_entries(trader.id, restriction.status.reason)

    assert reloaded(resting).status == OrderStatus.CANCELLED
    at_paper = db.select(PaperOrder.status).where(PaperOrder.client_order_id == resting.client_order_id)
    assert db.session.scalar(at_paper) == "cancelled"
    assert reloaded(stop).status == OrderStatus.WORKING, "the protective stop stays at the broker"
    assert reloaded(others).status == OrderStatus.WORKING, "another user's entries are not touched"
