"""The one gateway for every order: validate → risk check → persist the intent → submit → track.

Every entry point (dashboard, API, CLI, the stop-loss monitor) calls these functions; none talks
to a broker's order endpoints any other way. Submission happens in a worker after the intent is
committed (the adapter enqueues ``submit`` with the order id), so a crash can lose no order and
no order is ever sent twice: a worker claims PENDING_SUBMIT → SUBMITTED atomically before it
sends, and a write whose outcome was not seen becomes UNKNOWN for reconciliation.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from sqlalchemy.exc import IntegrityError

from models import BrokerConnection, Order, Trade, User
from utils.brokers.base import Broker, OrderRequest, Quote
from utils.enums import ConnectionStatus, OrderPurpose, OrderSide, OrderStatus, OrderType, TimeInForce, TradeStatus
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
from utils.risk.engine import RiskDecision
from utils.risk.inputs import OrderIntent, RiskSnapshot
from utils.rowlock import claimed
from utils.services import (
    audit,
    connections,
    notifications,
    order_states,
    order_tickets,
    risk,
    schwab_logins,
    trade_book,
)
from utils.services.order_tickets import OrderTicket

log = get_logger(__name__)
CLOSING_SIDE = {OrderSide.BUY: OrderSide.SELL, OrderSide.SELL_SHORT: OrderSide.BUY_TO_COVER}
RESEND_TASK_AFTER = timedelta(seconds=30)


# ---------------------------------------------------------------------------------- entries


def place_order(user: User, ticket: OrderTicket) -> Order:
    """Validate, check risk and store an entry with its trade (PENDING_SUBMIT); commit and audit.

    The caller enqueues ``submit`` with the returned order's id. An Idempotency-Key already used
    by this user returns that order when the request is the same and is refused when it is not.
    """
    ticket = order_tickets.validated(ticket)
    if ticket.idempotency_key and (existing := _by_idempotency_key(user, ticket.idempotency_key)):
        return _same_or_conflict(existing, ticket)
    connection = usable_connection(user, ticket.connection_id)
    quote = _pass_entry_gate(user, connection, ticket)
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


def preview_order(user: User, ticket: OrderTicket) -> RiskDecision:
    """What the risk engine would decide for this entry now, with the projected exposure; stores,
    audits and sends nothing (the order ticket's Preview). Bad input raises as ``place_order`` does."""
    ticket = order_tickets.validated(ticket)
    connection = usable_connection(user, ticket.connection_id)
    intent, quote, is_open = _entry_inputs(connection, ticket)
    return risk.preview(user, connection.id, intent, quote, is_open)


def _entry_inputs(connection: BrokerConnection, ticket: OrderTicket) -> tuple[OrderIntent, Quote | None, bool]:
    """Whole shares where the broker wants them (else raise), then what the risk engine weighs:
    the intent, a fresh quote and whether the market is open."""
    broker = connections.broker_for(connection)
    order_tickets.check_quantity_precision(broker, ticket.quantity)
    return order_tickets.intent_of(ticket), quote_or_none(broker, ticket.symbol), market_open(broker, ticket.symbol)


def _pass_entry_gate(user: User, connection: BrokerConnection, ticket: OrderTicket) -> Quote | None:
    """The risk engine on the entry's inputs; a refusal is told to the user and raised. Returns the
    quote the decision used."""
    intent, quote, is_open = _entry_inputs(connection, ticket)
    decision = risk.evaluate(user, connection.id, intent, quote, is_open)
    if not decision.allowed:
        message = f"{ticket.symbol}: order refused by your risk limits. " + " ".join(decision.reasons)
        notifications.notify(user.id, "risk_rejected", message, level="warning")
        db.session.commit()
    decision.raise_if_rejected()
    return quote


def usable_connection(user: User, connection_id: int) -> BrokerConnection:
    """The user's connection if it can trade now, else a clear error."""
    connection = connections.get_connection(user, connection_id)
    if connection.status != ConnectionStatus.CONNECTED:
        raise ConflictError(
            f"{connection.label} cannot trade right now ({connection.status.value.replace('_', ' ')}). "
            "Open Connections to fix it.",
            details={"connection_id": connection.id, "status": connection.status.value},
        )
    return connection


def quote_or_none(broker: Broker, symbol: str) -> Quote | None:
    """The broker's quote, or None when it has none (the risk engine then blocks entries)."""
    try:
        return broker.quotes([symbol]).get(symbol)
    except ArbionError as exc:
        log.warning("orders.quote_unavailable", symbol=symbol, error=exc.code)
        return None


def market_open(broker: Broker, symbol: str) -> bool:
    """Whether the symbol's market is open now; False when the broker cannot say (fail closed)."""
    if broker.capabilities.always_open:
        return True
    try:
        return broker.market_hours(symbol, utcnow()).is_open
    except ArbionError as exc:
        log.warning("orders.market_hours_unavailable", symbol=symbol, error=exc.code)
        return False


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
    check_exit(trade, OrderPurpose.EXIT, quantity)
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
    becomes REJECTED with the broker's reason.
    """
    if not _claim(order_id):
        return None
    order = db.session.get_one(Order, order_id)
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
    _pass_entry_gate(user, connection_of(old), ticket)
    new = _entry_order(trade, ticket)
    new.replaces_order_id, new.submitted_at = old.id, utcnow()
    order_states.move(new, OrderStatus.SUBMITTED)  # claimed for this caller: it sends the replace
    trade.quantity, trade.price = ticket.quantity, ticket.limit_price
    audit.record("order.replace", actor=user, subject=old, details=order_tickets.audit_details(ticket))
    db.session.commit()
    return new


def check_exit(trade: Trade, purpose: OrderPurpose, quantity: Decimal) -> None:
    """Run an exit of ``trade`` through the risk engine (raises when refused).

    Only the rules exits obey apply: the exit must reduce what the trade holds; no exposure
    limit, trading state or stale quote blocks it. The snapshot comes from the trade itself, so
    the monitor's closes cost no account-wide queries.
    """
    intent = OrderIntent(
        symbol=trade.symbol,
        side=CLOSING_SIDE[OrderSide(trade.side)],
        quantity=quantity,
        purpose=purpose,
    )
    snapshot = RiskSnapshot(now=utcnow(), reduces_position=Decimal(0) < quantity <= trade_book.open_quantity(trade))
    user = db.session.get_one(User, trade.user_id)
    decision = risk.ENGINE.check(intent, snapshot, risk.limits_for(user))
    if not decision.allowed:
        audit.record("risk.rejected", subject=trade, details={"reasons": decision.reasons, "purpose": purpose.value})
        db.session.commit()
    decision.raise_if_rejected()


def new_exit_order(trade: Trade, purpose: OrderPurpose, quantity: Decimal) -> Order:
    """A market exit intent for the trade (PENDING_SUBMIT, added to the session; the caller commits)."""
    return _new_order(trade, purpose, CLOSING_SIDE[OrderSide(trade.side)], quantity)


def _quoted_price(ticket: OrderTicket, quote: Quote | None) -> Decimal | None:
    """What a market entry is expected to pay: the ask for a buy, the bid for a short sale."""
    if quote is None:
        return None
    return quote.ask if ticket.side == OrderSide.BUY else quote.bid


def _entry_order(trade: Trade, ticket: OrderTicket) -> Order:
    """An entry intent for the trade as the ticket asks (PENDING_SUBMIT, added to the session)."""
    order = _new_order(trade, OrderPurpose.ENTRY, ticket.side, ticket.quantity)
    order.order_type, order.time_in_force = ticket.order_type, ticket.time_in_force
    order.limit_price, order.stop_price, order.trail_offset = ticket.limit_price, ticket.stop_price, ticket.trail_offset
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
        stop_loss_price=trade.stop_loss_price if trade else None,
        take_profit_price=trade.take_profit_price if trade else None,
        trailing_stop_offset=trade.trailing_stop_offset if trade else None,
    )


def get_order(user: User, order_id: int) -> Order:
    """One of the user's orders; NotFoundError for anyone else's."""
    order = db.session.get(Order, order_id)
    if order is None or order.user_id != user.id:
        raise NotFoundError("No such order.")
    return order
