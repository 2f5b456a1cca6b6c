"""The one gateway for every order: validate → risk check → persist the intent → submit → track.

Every entry point (dashboard, API, CLI, the stop-loss monitor) calls these functions; none talks
to a broker's order endpoints any other way. Submission happens in a worker after the intent is
committed (the adapter enqueues ``submit`` with the order id), so a crash can lose no order and
no order is ever sent twice: a worker claims PENDING_SUBMIT → SUBMITTED atomically before it
sends, and a write whose outcome was not seen becomes UNKNOWN for reconciliation. What an order
must pass before it is stored (a usable connection, the risk engine) lives in ``order_checks``.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from sqlalchemy.exc import IntegrityError

from models import BrokerConnection, Order, Trade, User
from utils.brokers.base import OrderRequest, Quote
from utils.enums import OrderPurpose, OrderSide, OrderStatus, OrderType, TimeInForce, TradeStatus
from utils.exceptions import (
    ArbionError,
    BrokerTemporaryError,
    ConflictError,
    NotFoundError,
    TokenExpiredError,
    UnknownOrderOutcomeError,
)
from utils.extensions import db
from utils.money import utcnow
from utils.observability import get_logger
from utils.rowlock import claimed
from utils.services import (
    audit,
    connections,
    notifications,
    order_checks,
    order_states,
    order_tickets,
    schwab_logins,
    system,
    trade_book,
)
from utils.services.order_tickets import OrderTicket

log = get_logger(__name__)
RESEND_TASK_AFTER = timedelta(seconds=30)


# ---------------------------------------------------------------------------------- entries


def place_order(user: User, ticket: OrderTicket) -> Order:
    """Validate, check risk and store an entry with its trade (PENDING_SUBMIT); commit and audit.

    Refused (503) before anything is stored or asked of a broker while the task queue is down.
    The caller enqueues ``submit`` with the returned order's id. An Idempotency-Key already used
    by this user returns that order when the request is the same and is refused when it is not.
    """
    ticket = order_tickets.validated(ticket)
    if ticket.idempotency_key and (existing := _by_idempotency_key(user, ticket.idempotency_key)):
        return _same_or_conflict(existing, ticket)
    system.require_task_queue()
    connection = order_checks.usable_connection(user, ticket.connection_id)
    quote = order_checks.check_entry(user, connection, ticket)
    try:
        order = _store_entry(user, connection, ticket, quote)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # the same Idempotency-Key was stored by a concurrent request
        existing = _by_idempotency_key(user, ticket.idempotency_key or "")
        if existing is None:
            raise
        return _same_or_conflict(existing, ticket)
    return order


# ---------------------------------------------------------------------------------- exits


def close_trade(trade: Trade, reason: str, actor: User | None = None, *, notify: str = "") -> Order | None:
    """Store a market exit for the trade's whole open quantity (PENDING_SUBMIT); commit and audit.

    ``notify``, when given, is told to the user in the same transaction as the exit it announces.

    Exactly once: the trade moves OPEN → CLOSING in one conditional UPDATE, and the database
    allows one live exit per trade, so concurrent callers get None instead of a second exit.
    Returns None too when nothing is open or a protective order must be cancelled first
    (``cancel_protection`` does that; the caller retries on its next pass).
    """
    quantity = trade_book.open_quantity(trade)
    if quantity <= 0 or trade_book.live_exit(trade) is not None:
        return None
    order_checks.check_exit(trade, OrderPurpose.EXIT, quantity)
    # SKIP LOCKED: a trade another monitor run is closing right now is left to it (PostgreSQL;
    # SQLite serialises writers anyway). Should that run fail, the next cycle finds it OPEN.
    still_open = (
        db.select(Trade.id)
        .where(Trade.id == trade.id, Trade.status.in_([TradeStatus.OPEN, TradeStatus.PARTIALLY_FILLED]))
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    closing = db.update(Trade).where(Trade.id == still_open).values(status=TradeStatus.CLOSING, updated_at=utcnow())
    if not claimed(closing):
        db.session.rollback()
        return None
    try:
        order = new_exit_order(trade, OrderPurpose.EXIT, quantity)
        order.status_detail = reason[:500]
        audit.record("order.exit", actor=actor, subject=trade, details={"reason": reason, "quantity": str(quantity)})
        if notify:
            notifications.notify(trade.user_id, "stop_triggered", notify, subject=trade)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # another exit went live first: it wins, we add nothing
        return None
    return order


# ---------------------------------------------------------------------------------- submission


def submit(order_id: int) -> Order | None:
    """Send one stored order to its broker, once. Called by the worker; None if not ours to send.

    BrokerTemporaryError (the broker never saw it) puts the order back to PENDING_SUBMIT and is
    re-raised so the task retries with backoff; an unseen outcome becomes UNKNOWN; a refusal
    becomes REJECTED with the broker's reason. An entry claimed while trading is no longer ACTIVE
    for its platform, user or connection is REJECTED with that reason and never sent.
    """
    if not _claim(order_id):
        return None
    order = db.session.get_one(Order, order_id)
    refusal = order_checks.send_refusal(order)
    if refusal is not None:
        _settle_failure(order, OrderStatus.REJECTED, refusal)
        return order
    return send_claimed(order)


def send_claimed(order: Order) -> Order:
    """Send an order this caller holds SUBMITTED (claimed by ``submit``, or stored claimed, as a
    protective stop is) to its broker; its outcome as ``submit`` describes."""
    connection = connection_of(order)
    try:
        broker = connections.broker_for(connection)
        report = broker.place_order(connections.trading_account_id(connection), request_for(order))
    except BrokerTemporaryError:
        _settle_failure(order, OrderStatus.PENDING_SUBMIT, "Broker busy or unreachable; will try again.")
        raise
    except UnknownOrderOutcomeError as exc:
        _settle_failure(order, OrderStatus.UNKNOWN, exc.message)
        return order
    except TokenExpiredError:
        schwab_logins.mark_reconnect_needed(connection)
        _settle_failure(order, OrderStatus.REJECTED, "The broker login has expired: reconnect, then try again.")
        return order
    except ArbionError as exc:
        _settle_failure(order, OrderStatus.REJECTED, exc.message)
        return order
    trade_book.apply_report(order, report)
    audit.record("order.submitted", subject=order, details={"broker_order_id": order.broker_order_id})
    db.session.commit()
    return order


def waiting_to_be_sent() -> list[int]:
    """Ids of intents still PENDING_SUBMIT a while after they were stored (their task was lost)."""
    cutoff = utcnow() - RESEND_TASK_AFTER
    statement = db.select(Order.id).where(Order.status == OrderStatus.PENDING_SUBMIT, Order.created_at < cutoff)
    return list(db.session.scalars(statement.order_by(Order.id)))


def connection_of(row: Order | Trade) -> BrokerConnection:
    """The connection an order or trade belongs to (connections with orders cannot be deleted)."""
    return db.session.get_one(BrokerConnection, row.connection_id)


def request_for(order: Order) -> OrderRequest:
    """The broker request of a stored order (its client order id is the one stored)."""
    return OrderRequest(
        symbol=order.symbol,
        side=OrderSide(order.side),
        quantity=order.quantity,
        order_type=OrderType(order.order_type),
        client_order_id=order.client_order_id,
        time_in_force=TimeInForce(order.time_in_force),
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        trail_offset=order.trail_offset,
        trail_percent=order.trail_percent,
    )


def _claim(order_id: int) -> bool:
    """PENDING_SUBMIT → SUBMITTED in one conditional UPDATE: exactly one worker wins."""
    won = claimed(
        db.update(Order)
        .where(Order.id == order_id, Order.status == OrderStatus.PENDING_SUBMIT)
        .values(status=OrderStatus.SUBMITTED, submitted_at=utcnow(), updated_at=utcnow())
    )
    db.session.commit()
    return won


def _settle_failure(order: Order, status: OrderStatus, detail: str) -> None:
    db.session.refresh(order)
    order_states.move(order, status, detail)
    if order.trade is not None:
        trade_book.settle(order.trade)
    if status != OrderStatus.PENDING_SUBMIT:
        audit.record(f"order.{status.value}", subject=order, details={"detail": detail[:200]})
        level = "error" if order.purpose != OrderPurpose.ENTRY else "warning"
        message = f"{order.symbol} {order.purpose.value.replace('_', ' ')} order {status.value}: {detail}"
        notifications.notify(order.user_id, f"order_{status.value}", message, level=level, subject=order)
    db.session.commit()
    log.warning("orders.submit_failed", order_id=order.id, status=status.value)


# ---------------------------------------------------------------------------------- helpers


def _store_entry(user: User, connection: BrokerConnection, ticket: OrderTicket, quote: Quote | None) -> Order:
    trade = Trade(
        user_id=user.id,
        connection_id=connection.id,
        symbol=ticket.symbol,
        side=ticket.side,
        trade_type=ticket.order_type,
        status=TradeStatus.PENDING,
        quantity=ticket.quantity,
        price=ticket.limit_price or _quoted_price(ticket, quote),
        account_hash=connection.account_hash,
        stop_loss_price=ticket.stop_loss_price,
        take_profit_price=ticket.take_profit_price,
        trailing_stop_offset=ticket.trailing_stop_offset,
        trailing_stop_percent=ticket.trailing_stop_percent,
    )
    db.session.add(trade)
    order = _entry_order(trade, ticket)
    order.idempotency_key = ticket.idempotency_key
    db.session.flush()
    audit.record("order.create", actor=user, subject=order, details=order_tickets.audit_details(ticket))
    return order


def replacement_for(
    user: User,
    old: Order,
    *,
    quantity: Decimal | None = None,
    limit_price: Decimal | None = None,
    stop_price: Decimal | None = None,
) -> Order:
    """Validate and risk-check a change to a working entry, then store the new order (SUBMITTED,
    claimed for this caller, linked to ``old``; commit). The caller sends the replace."""
    trade = old.trade
    if trade is None:
        raise ConflictError("This order has no trade to change.")
    current = ticket_of(old)
    ticket = order_tickets.validated(
        replace(
            current,
            quantity=quantity if quantity is not None else current.quantity,
            limit_price=limit_price if limit_price is not None else current.limit_price,
            stop_price=stop_price if stop_price is not None else current.stop_price,
        )
    )
    order_checks.check_entry(user, connection_of(old), ticket)
    new = _entry_order(trade, ticket)
    new.replaces_order_id, new.submitted_at = old.id, utcnow()
    order_states.move(new, OrderStatus.SUBMITTED)  # claimed for this caller: it sends the replace
    trade.quantity, trade.price = ticket.quantity, ticket.limit_price
    audit.record("order.replace", actor=user, subject=old, details=order_tickets.audit_details(ticket))
    db.session.commit()
    return new


def new_exit_order(trade: Trade, purpose: OrderPurpose, quantity: Decimal) -> Order:
    """A market exit intent for the trade (PENDING_SUBMIT, added to the session; the caller commits)."""
    return _new_order(trade, purpose, order_checks.CLOSING_SIDE[OrderSide(trade.side)], quantity)


def _quoted_price(ticket: OrderTicket, quote: Quote | None) -> Decimal | None:
    """What a market entry is expected to pay: the ask for a buy, the bid for a short sale."""
    if quote is None:
        return None
    return quote.ask if ticket.side == OrderSide.BUY else quote.bid


def _entry_order(trade: Trade, ticket: OrderTicket) -> Order:
    """An entry intent for the trade as the ticket asks (PENDING_SUBMIT, added to the session)."""
    order = _new_order(trade, OrderPurpose.ENTRY, ticket.side, ticket.quantity)
    order.order_type, order.time_in_force = ticket.order_type, ticket.time_in_force
    order.limit_price, order.stop_price = ticket.limit_price, ticket.stop_price
    order.trail_offset, order.trail_percent = ticket.trail_offset, ticket.trail_percent
    return order


def _new_order(trade: Trade, purpose: OrderPurpose, side: OrderSide, quantity: Decimal) -> Order:
    order = Order(
        user_id=trade.user_id,
        connection_id=trade.connection_id,
        trade=trade,
        client_order_id=uuid.uuid4().hex,
        purpose=purpose,
        symbol=trade.symbol,
        side=side,
        order_type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        status=OrderStatus.PENDING_SUBMIT,
        quantity=quantity,
        remaining_quantity=quantity,
        filled_quantity=Decimal(0),
        fees=Decimal(0),
    )
    db.session.add(order)
    return order


def _by_idempotency_key(user: User, key: str) -> Order | None:
    return db.session.scalar(db.select(Order).where(Order.user_id == user.id, Order.idempotency_key == key))


def _same_or_conflict(existing: Order, ticket: OrderTicket) -> Order:
    if replace(ticket_of(existing), idempotency_key=None) != replace(ticket, idempotency_key=None):
        raise ConflictError(
            "This Idempotency-Key was already used for a different order.",
            details={"order_id": existing.id},
        )
    return existing


def ticket_of(order: Order) -> OrderTicket:
    """The entry ticket a stored entry order answers (its trade holds the protection levels)."""
    trade = order.trade
    return OrderTicket(
        connection_id=order.connection_id,
        symbol=order.symbol,
        side=OrderSide(order.side),
        quantity=order.quantity,
        order_type=OrderType(order.order_type),
        time_in_force=TimeInForce(order.time_in_force),
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        trail_offset=order.trail_offset,
        trail_percent=order.trail_percent,
        stop_loss_price=trade.stop_loss_price if trade else None,
        take_profit_price=trade.take_profit_price if trade else None,
        trailing_stop_offset=trade.trailing_stop_offset if trade else None,
        trailing_stop_percent=trade.trailing_stop_percent if trade else None,
    )


def get_order(user: User, order_id: int) -> Order:
    """One of the user's orders; NotFoundError for anyone else's."""
    order = db.session.get(Order, order_id)
    if order is None or order.user_id != user.id:
        raise NotFoundError("No such order.")
    return order
