"""The checks every order passes before it is stored: a connection that can trade, a quantity the
broker accepts, and the risk engine on fresh inputs (a quote, the market's hours).

Entries meet every rule and a refusal is told to the user; exits meet only the rules exits obey,
so nothing ever blocks a protective or closing exit that reduces what a trade holds. The order
ticket's Preview asks the same questions without storing anything.
"""

from __future__ import annotations

from decimal import Decimal

from models import BrokerConnection, Order, Trade, User
from utils.brokers.base import Broker, Quote
from utils.enums import ConnectionStatus, OrderPurpose, OrderSide, Provider
from utils.exceptions import ArbionError, ConflictError, InvalidInputError, NotFoundError
from utils.extensions import db
from utils.money import utcnow
from utils.observability import get_logger
from utils.risk.engine import RiskDecision
from utils.risk.inputs import OrderIntent, RiskLimits, RiskSnapshot
from utils.risk.rules import TradingStateRule
from utils.risk.stop_changes import off_increment
from utils.rowlock import locked_one
from utils.services import audit, connections, market_data, notifications, order_tickets, risk, trade_book
from utils.services.order_tickets import OrderTicket

log = get_logger(__name__)
TRADING_STATES = TradingStateRule()
# The ticket's protective prices a broker holds as an order (the take-profit is watched by the monitor).
PROTECTIVE_PRICES = ("stop_loss_price", "trailing_stop_offset")
CLOSING_SIDE = {OrderSide.BUY: OrderSide.SELL, OrderSide.SELL_SHORT: OrderSide.BUY_TO_COVER}


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
    check_protection_increments(broker, ticket)
    quote = quote_or_none(Provider(connection.provider), broker, ticket.symbol)
    return order_tickets.intent_of(ticket), quote, market_open(Provider(connection.provider), broker, ticket.symbol)


def check_entry(user: User, connection: BrokerConnection, ticket: OrderTicket) -> Quote | None:
    """The risk engine on the entry's inputs; a refusal is told to the user and raised. Returns the
    quote the decision used.

    The quote and the market's hours are fetched first; then the user's entry gate is held until
    the caller commits (or rolls back), so the snapshot, the decision and the stored intent are
    one step that no other entry of the same user can interleave with.
    """
    intent, quote, is_open = _entry_inputs(connection, ticket)
    hold_entry_gate(user)
    decision = risk.evaluate(user, connection.id, intent, quote, is_open)
    if not decision.allowed:
        message = f"{ticket.symbol}: order refused by your risk limits. " + " ".join(decision.reasons)
        notifications.notify(user.id, "risk_rejected", message, level="warning")
        db.session.commit()
    decision.raise_if_rejected()
    return quote


def hold_entry_gate(user: User) -> None:
    """Serialise the user's entries until this transaction ends (a lock on the user's row).

    The aggregate limits (open positions, orders per day, position and total exposure) are
    checked on what is stored, so two entries checked side by side would each see room for one.
    Every entry of the user, from any web process, worker, CLI or bot, waits here for the one
    before it to be stored or refused, and then reads a snapshot that includes it.
    """
    db.session.commit()  # the lock must open its own transaction (utils.rowlock)
    if locked_one(User, User.id == user.id, key_share=True) is None:
        raise NotFoundError("No such user.")


def check_protection_increments(broker: Broker, ticket: OrderTicket) -> None:
    """Refuse an entry's stop-loss or trailing amount off the instrument's price increment: the broker
    would refuse the protective stop once the entry fills, leaving the position to the monitor."""
    for field in PROTECTIVE_PRICES:
        price = getattr(ticket, field)
        if price is None:
            continue
        problem = off_increment(ticket.symbol, price, price_increment_or_none(broker, ticket.symbol, price))
        if problem is not None:
            raise InvalidInputError(problem, details={"field": field})


def price_increment_or_none(broker: Broker, symbol: str, price: Decimal) -> Decimal | None:
    """The broker's price step for the symbol near ``price``; None for a price that is not a positive
    number or when the broker cannot say now (callers refuse)."""
    if not price.is_finite() or price <= 0:
        return None
    try:
        return broker.price_increment(symbol, price)
    except ArbionError as exc:
        log.warning("orders.increment_unavailable", symbol=symbol, error=exc.code)
        return None


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


def quote_or_none(provider: Provider, broker: Broker, symbol: str) -> Quote | None:
    """The provider's quote (through the shared quote cache), or None when it has none (the risk
    engine then blocks entries)."""
    try:
        return market_data.quotes(provider, [symbol], broker.quotes)[0].get(symbol)
    except ArbionError as exc:
        log.warning("orders.quote_unavailable", symbol=symbol, error=exc.code)
        return None


def market_open(provider: Provider, broker: Broker, symbol: str) -> bool:
    """Whether the symbol's market is open now (the day's hours through the shared cache); False
    when the broker cannot say (fail closed)."""
    if broker.capabilities.always_open:
        return True
    try:
        return market_data.market_hours(provider, symbol, utcnow(), broker.market_hours).is_open
    except ArbionError as exc:
        log.warning("orders.market_hours_unavailable", symbol=symbol, error=exc.code)
        return False


def send_refusal(order: Order) -> str | None:
    """Why a claimed order may not be sent now, in the trader's words, else None.

    Entries are checked again against the trading states when a worker claims them: a halt of the
    platform, of the user or of the connection after the entry was accepted (while it waited in
    the queue) refuses it. Exits are never held back.
    """
    if order.purpose != OrderPurpose.ENTRY:
        return None
    intent = OrderIntent(symbol=order.symbol, side=OrderSide(order.side), quantity=order.quantity)
    snapshot = risk.trading_states(order.user_id, order.connection_id)
    return TRADING_STATES.check(intent, snapshot, RiskLimits())


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
    decision = risk.engine().check(intent, snapshot, risk.limits_for(user))
    if not decision.allowed:
        audit.record("risk.rejected", subject=trade, details={"reasons": decision.reasons, "purpose": purpose.value})
        db.session.commit()
    decision.raise_if_rejected()
