"""Following orders after submission: status and fills from the broker, cancels, UNKNOWN resolved.

The tracker only visits connections that have live orders; each order is committed on its own
and one connection's failure never stops the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from flask import current_app
from sqlalchemy.exc import IntegrityError

from models import BrokerConnection, Order, User
from utils.brokers.base import Broker, BrokerOrder
from utils.enums import OrderPurpose, OrderStatus
from utils.exceptions import (
    ArbionError,
    BrokerTemporaryError,
    ConflictError,
    OrderCancellationError,
    TokenExpiredError,
    UnknownOrderOutcomeError,
)
from utils.extensions import db
from utils.money import utcnow
from utils.observability import get_logger
from utils.rowlock import claimed, locked_one
from utils.services import audit, connections, order_states, orders, schwab_logins, trade_book

log = get_logger(__name__)
TRACKED = (
    OrderStatus.SUBMITTED,
    OrderStatus.WORKING,
    OrderStatus.PARTIALLY_FILLED,
    OrderStatus.CANCEL_PENDING,
    OrderStatus.UNKNOWN,
)
MATCH_WINDOW = timedelta(minutes=5)  # how far from our submit time a broker's order may be entered


@dataclass
class TrackingReport:
    """What one tracking pass did."""

    connections: int = 0
    orders: int = 0
    changed: int = 0
    failed: int = 0


def connections_with_live_orders() -> list[int]:
    """Ids of connections with at least one order to follow, in one query."""
    statement = db.select(Order.connection_id).where(Order.status.in_(TRACKED)).distinct()
    return sorted(db.session.scalars(statement))


def track_all() -> TrackingReport:
    """One tracking pass over every connection with live orders."""
    report = TrackingReport()
    for connection_id in connections_with_live_orders():
        track_connection(connection_id, report)
    return report


def track_connection(connection_id: int, report: TrackingReport | None = None) -> TrackingReport:
    """Refresh every live order of one connection from its broker."""
    report = report or TrackingReport()
    report.connections += 1
    connection = db.session.get(BrokerConnection, connection_id)
    if connection is None:
        return report
    try:
        broker, account = connections.broker_for(connection), connections.trading_account_id(connection)
    except ArbionError as exc:
        _connection_failed(connection, exc, report)
        return report
    live = db.session.scalars(
        db.select(Order).where(Order.connection_id == connection_id, Order.status.in_(TRACKED)).order_by(Order.id)
    )
    for order_id in [order.id for order in live]:
        report.orders += 1
        try:
            report.changed += int(refresh_order(db.session.get(Order, order_id), broker, account))
        except TokenExpiredError as exc:
            _connection_failed(connection, exc, report)
            return report
        except (ArbionError, IntegrityError) as exc:  # IntegrityError: a concurrent pass recorded it first
            db.session.rollback()
            report.failed += 1
            log.warning("orders.track_failed", order_id=order_id, error=getattr(exc, "code", type(exc).__name__))
    return report


def refresh_order(order: Order | None, broker: Broker, account: str) -> bool:
    """Bring one live order up to date (commit); True if it changed.

    An order without a broker id is looked up under its row lock, re-read: tracking and
    reconciliation may resolve the same order at once, and the later one must see what the first
    found (else it would not find the broker's order, which is now taken by this very order, and
    record an order that exists at the broker as never placed).
    """
    if order is not None and order.broker_order_id is None:
        db.session.commit()  # the row lock must be the first statement of its transaction (utils.rowlock)
        order = locked_one(Order, Order.id == order.id)
    if order is None or not order_states.is_live(OrderStatus(order.status)):
        db.session.commit()
        return False
    if order.broker_order_id is None:
        changed = _resolve_unsent(order, broker, account)
    else:
        changed = trade_book.apply_report(order, broker.get_order(account, order.broker_order_id))
    db.session.commit()
    return changed


def cancel_order(user: User, order_id: int) -> Order:
    """Cancel one of the user's live orders; the broker's answer is applied at once (commit, audit)."""
    order = orders.get_order(user, order_id)
    if cancel_unsent(order):
        audit.record("order.cancel", actor=user, subject=order, details={"sent": False})
        db.session.commit()
        return order
    if order.broker_order_id is None or order.status == OrderStatus.UNKNOWN:
        raise ConflictError("This order is being sent to the broker right now; try again in a few seconds.")
    if not order_states.is_live(OrderStatus(order.status)):
        raise ConflictError(f"This order is already {order.status.value.replace('_', ' ')}.")
    connection = orders.connection_of(order)
    broker, account = connections.broker_for(connection), connections.trading_account_id(connection)
    audit.record("order.cancel", actor=user, subject=order, details={"sent": True})
    cancel_at_broker(order, broker, account, "Cancel requested.")
    return order


def replace_order(
    user: User,
    order_id: int,
    *,
    quantity: Decimal | None = None,
    limit_price: Decimal | None = None,
    stop_price: Decimal | None = None,
) -> Order:
    """Change a working entry's quantity or prices at the broker (commit, audit).

    The new order is stored first (SUBMITTED, its own client order id, linked to the old one),
    then sent; the broker's answer marks the old one REPLACED. A refusal leaves the old order
    working; an unseen answer leaves the new one UNKNOWN for reconciliation. Entries only: a
    stop-loss is moved with ``positions.move_stop``.
    """
    old = orders.get_order(user, order_id)
    if old.purpose != OrderPurpose.ENTRY or old.status != OrderStatus.WORKING or old.broker_order_id is None:
        raise ConflictError("Only a working entry order with no fills yet can be changed; cancel it instead.")
    connection = orders.connection_of(old)
    broker, account = connections.broker_for(connection), connections.trading_account_id(connection)
    if not broker.capabilities.replace:
        raise ConflictError("This broker cannot change an order in place; cancel it and place a new one.")
    new = orders.replacement_for(user, old, quantity=quantity, limit_price=limit_price, stop_price=stop_price)
    try:
        report = broker.replace_order(account, old.broker_order_id, orders.request_for(new))
    except ArbionError as exc:
        _replace_failed(new, exc)
        raise
    trade_book.apply_replacement(old, _last_report(broker, account, old), new, report)
    audit.record("order.replaced", actor=user, subject=new, details={"replaces": old.id})
    db.session.commit()
    return new


def _last_report(broker: Broker, account: str, old: Order) -> BrokerOrder | None:
    """The broker's final report of a replaced order (None where a replace keeps the order id)."""
    if broker.capabilities.replace_keeps_id or old.broker_order_id is None:
        return None
    try:
        return broker.get_order(account, old.broker_order_id)
    except ArbionError as exc:  # the replace itself succeeded: follow the new order regardless
        log.warning("orders.replaced_report_failed", order_id=old.id, error=exc.code)
        return None


def _replace_failed(new: Order, exc: ArbionError) -> None:
    """The broker refused (new → REJECTED, old untouched) or we did not see its answer (UNKNOWN)."""
    status = OrderStatus.UNKNOWN if isinstance(exc, UnknownOrderOutcomeError) else OrderStatus.REJECTED
    if isinstance(exc, BrokerTemporaryError):
        status = OrderStatus.REJECTED  # it never reached the broker: nothing changed there
    order_states.move(new, status, exc.message)
    if new.trade is not None:
        trade_book.settle(new.trade)
    db.session.commit()


def cancel_at_broker(order: Order, broker: Broker, account: str, why: str) -> None:
    """CANCEL_PENDING (committed), ask the broker, then apply its report of the order (commit).

    A cancel refused because the order filled or ended meanwhile is no error: the report says
    which. One that never reached the broker puts the order back as it was and is re-raised.
    """
    previous = OrderStatus(order.status)
    order_states.move(order, OrderStatus.CANCEL_PENDING, why)
    db.session.commit()
    broker_order_id = order.broker_order_id or ""
    try:
        broker.cancel_order(account, broker_order_id)
    except OrderCancellationError:
        pass  # filled or closed meanwhile: the broker's report below says which
    except BrokerTemporaryError:
        order_states.move(order, previous, "The cancel did not reach the broker; the order is still working.")
        db.session.commit()
        raise
    trade_book.apply_report(order, broker.get_order(account, broker_order_id))
    db.session.commit()


def cancel_unsent(order: Order, detail: str = "Cancelled before it was sent.") -> bool:
    """PENDING_SUBMIT → CANCELLED without a broker call, unless a worker claimed it first (the
    caller audits and commits)."""
    if order.status != OrderStatus.PENDING_SUBMIT:
        return False
    cancelled = claimed(
        db.update(Order)
        .where(Order.id == order.id, Order.status == OrderStatus.PENDING_SUBMIT)
        .values(status=OrderStatus.CANCELLED, status_detail=detail[:500], closed_at=utcnow())
    )
    db.session.refresh(order)
    if cancelled and order.trade is not None:
        trade_book.settle(order.trade)
    return cancelled


def _resolve_unsent(order: Order, broker: Broker, account: str) -> bool:
    """An order with no broker id: still being sent, or UNKNOWN and looked up at the broker."""
    now = utcnow()
    sent_at = order.submitted_at or order.created_at
    if order.status == OrderStatus.SUBMITTED:
        if now - sent_at < send_grace():
            return False
        order_states.move(order, OrderStatus.UNKNOWN, "The worker stopped while sending; looking it up.")
    found = _matching_broker_orders(order, broker, account)
    if len(found) == 1:
        # Read the order itself: a listing may carry no fills (Coinbase's does not), and a FILLED
        # order is never polled again, so its fills would never be recorded.
        trade_book.apply_report(order, broker.get_order(account, found[0].broker_order_id))
        audit.record("order.reconciled", subject=order, details={"broker_order_id": order.broker_order_id})
        return True
    if len(found) > 1:
        order_states.move(order, OrderStatus.UNKNOWN, f"{len(found)} broker orders match; a person must decide.")
        return True
    if now - sent_at >= give_up_after():
        order_states.move(order, OrderStatus.REJECTED, "The broker has no record of this order: it was not placed.")
        if order.trade is not None:
            trade_book.settle(order.trade)
        audit.record("order.reconciled", subject=order, details={"found": False})
        return True
    return order.status == OrderStatus.UNKNOWN


def send_grace() -> timedelta:
    """How long after its claim a SUBMITTED order with no broker id means the sender died."""
    return timedelta(seconds=current_app.config["ORDER_SEND_GRACE"])


def give_up_after() -> timedelta:
    """How long after sending an order the broker never shows is taken as not placed."""
    return timedelta(seconds=current_app.config["ORDER_LOOKUP_GIVE_UP"])


def _matching_broker_orders(order: Order, broker: Broker, account: str) -> list[BrokerOrder]:
    """The broker's orders that are this one: by client order id, else by shape and entry time."""
    since, until = order.created_at - MATCH_WINDOW, utcnow() + timedelta(minutes=1)
    reports = broker.list_orders(account, since, until)
    by_client_id = [r for r in reports if r.client_order_id == order.client_order_id]
    if by_client_id:
        return by_client_id
    taken = set(db.session.scalars(db.select(Order.broker_order_id).where(Order.connection_id == order.connection_id)))
    return [
        r
        for r in reports
        if r.client_order_id is None
        and r.broker_order_id not in taken
        and (r.symbol, r.side, r.quantity) == (order.symbol, order.side, order.quantity)
        and r.entered_at is not None
        and abs(r.entered_at - (order.submitted_at or order.created_at)) <= MATCH_WINDOW
    ]


def _connection_failed(connection: BrokerConnection, exc: ArbionError, report: TrackingReport) -> None:
    db.session.rollback()
    report.failed += 1
    if isinstance(exc, TokenExpiredError):
        schwab_logins.mark_reconnect_needed(connection)
        db.session.commit()
    log.warning("orders.track_connection_failed", connection_id=connection.id, error=exc.code)
