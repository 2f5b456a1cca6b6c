"""Positions: open trades grouped per connection and symbol, and the trader's exits on them.

Closing goes through the one gateway (``orders.close_trade``); a broker-held stop is cancelled and
confirmed first, so a position is never sold twice (LESSONS.md #2). Every function that stores an
exit returns its order ids: the adapter sends them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from models import BrokerConnection, Order, Trade, User
from utils.brokers.base import Quote
from utils.enums import OrderPurpose, OrderStatus, ProtectionMode, Provider, TradeStatus
from utils.exceptions import ArbionError, ConflictError, InvalidInputError, NotFoundError
from utils.extensions import db
from utils.services import audit, connections, market_data, order_tracking, orders, protection, trade_book

OPEN_STATUSES = (TradeStatus.OPEN, TradeStatus.PARTIALLY_FILLED, TradeStatus.CLOSING)


@dataclass
class Position:
    """What one connection holds in one symbol, from our trades' fills."""

    connection_id: int
    symbol: str
    quantity: Decimal  # negative for a short
    average_price: Decimal
    trades: list[Trade] = field(default_factory=list)

    @property
    def protection(self) -> str:
        """The weakest protection among its trades: "unprotected", "emulated" or "native"."""
        modes = {ProtectionMode(trade.protection_mode) for trade in self.trades}
        for mode, word in ((ProtectionMode.NONE, "unprotected"), (ProtectionMode.EMULATED, "emulated")):
            if mode in modes:
                return word
        return "native"


def open_positions(user: User, connection_id: int | None = None) -> list[Position]:
    """The user's positions per connection and symbol (two queries however many trades)."""
    statement = db.select(Trade).where(Trade.user_id == user.id, Trade.status.in_(OPEN_STATUSES))
    if connection_id is not None:
        statement = statement.where(Trade.connection_id == connection_id)
    grouped: dict[tuple[int, str], list[Trade]] = defaultdict(list)
    for trade in db.session.scalars(statement.order_by(Trade.id)):
        if trade_book.open_quantity(trade) > 0:
            grouped[(trade.connection_id, trade.symbol)].append(trade)
    return [_position(key, trades) for key, trades in sorted(grouped.items())]


@dataclass(frozen=True)
class Mark:
    """The latest price of a position's symbol and what its trades would make at it."""

    price: Decimal | None
    unrealized_pnl: dict[int, Decimal]


def marks(held: list[Position]) -> dict[tuple[int, str], Mark]:
    """Unrealized P&L per trade at the latest (shared, briefly cached) quote: the bid for a long,
    the ask for a short. A position whose quote cannot be had gets no price, never a made-up one."""
    by_connection: dict[int, list[Position]] = defaultdict(list)
    for position in held:
        by_connection[position.connection_id].append(position)
    found: dict[tuple[int, str], Mark] = {}
    for connection_id, group in by_connection.items():
        quotes = _quotes_for(connection_id, sorted({p.symbol for p in group}))
        for position in group:
            found[(connection_id, position.symbol)] = _mark(position, quotes.get(position.symbol))
    return found


def _quotes_for(connection_id: int, symbols: list[str]) -> dict[str, Quote]:
    connection = db.session.get_one(BrokerConnection, connection_id)
    try:
        broker = connections.broker_for(connection)
        return market_data.quotes(Provider(connection.provider), symbols, broker.quotes)[0]
    except ArbionError:
        return {}


def _mark(position: Position, quote: Quote | None) -> Mark:
    if quote is None:
        return Mark(None, {})
    pnl = {}
    for trade in position.trades:
        price = quote.bid if trade_book.is_long(trade) else quote.ask
        pnl[trade.id] = trade_book.unrealized_pnl(trade, price)
    return Mark(quote.bid if position.quantity > 0 else quote.ask, pnl)


def close_position(user: User, trade_id: int, *, actor: User | None = None, reason: str = "") -> Order:
    """Close one of the user's trades at market (commit, audit); the caller sends the exit.

    ``actor`` and ``reason`` name an admin acting for the user (default: the trader themselves).
    """
    trade = _own_trade(user, trade_id)
    if trade_book.open_quantity(trade) <= 0:
        raise ConflictError("Nothing is open on this trade.")
    if (live := trade_book.live_exit(trade)) is not None and live.purpose == OrderPurpose.EXIT:
        raise ConflictError("This position is already being closed.")
    if protection.protective_order(trade) is not None:
        broker = connections.broker_for(orders.connection_of(trade))
        if not protection.cancel_protection(trade, broker):
            raise ConflictError("The broker's stop for this position filled or is still being cancelled; look again.")
    exit_order = orders.close_trade(trade, reason or "Closed by the trader.", actor=actor or user)
    if exit_order is None:
        raise ConflictError("This position is already being closed.")
    return exit_order


def flatten(user: User, connection_id: int) -> list[int]:
    """Cancel the connection's working entries, then close every open trade on it. Exit ids.

    A trade that cannot be closed right now is reported by raising after the others are done.
    """
    exits, problems = _flatten_connection(user, connections.get_connection(user, connection_id))
    if problems:
        raise ConflictError("Some positions could not be closed yet: " + "; ".join(problems), details={"exits": exits})
    return exits


@dataclass(frozen=True)
class Flattened:
    """What flattening a whole user did: exit order ids to send, and what could not be closed yet."""

    exits: list[int]
    problems: list[str]


def flatten_user(actor: User, user_id: int, reason: str) -> Flattened:
    """An admin closes everything a user holds on every connection, for a stated reason (audited).

    Working entries are cancelled first; a trade that cannot be closed right now is reported in
    ``problems`` while the others still close. The caller sends the exits.
    """
    reason = reason.strip()
    if not reason:
        raise InvalidInputError("Give a reason for flattening this user.", details={"field": "reason"})
    owner = db.session.get(User, user_id)
    if owner is None:
        raise NotFoundError("No such user.")
    exits: list[int] = []
    problems: list[str] = []
    for connection in owner.connections:
        found = _flatten_connection(owner, connection, actor=actor, reason=f"Flattened by an admin: {reason}")
        exits, problems = exits + found[0], problems + found[1]
    audit.record("admin.user_flatten", actor=actor, subject=owner, details={"reason": reason, "exits": len(exits)})
    db.session.commit()
    return Flattened(exits, problems)


def _flatten_connection(
    user: User, connection: BrokerConnection, *, actor: User | None = None, reason: str = ""
) -> tuple[list[int], list[str]]:
    """Cancel the connection's working entries, then close its open trades: (exit ids, problems)."""
    cancel_entries(user, connection.id)
    exits, problems = [], []
    for position in open_positions(user, connection.id):
        for trade in position.trades:
            try:
                exits.append(close_position(user, trade.id, actor=actor, reason=reason).id)
            except ArbionError as exc:
                problems.append(f"{trade.symbol} (trade {trade.id}): {exc.message}")
    details = {"exits": len(exits), "reason": reason} if reason else {"exits": len(exits)}
    audit.record("positions.flatten", actor=actor or user, subject=connection, details=details)
    db.session.commit()
    return exits, problems


def cancel_entries(user: User, connection_id: int | None = None) -> list[Order]:
    """Cancel every live entry order of the user (on one connection when given); stops stay."""
    statement = db.select(Order.id).where(
        Order.user_id == user.id,
        Order.purpose == OrderPurpose.ENTRY,
        Order.status.in_([OrderStatus.PENDING_SUBMIT, OrderStatus.WORKING, OrderStatus.PARTIALLY_FILLED]),
    )
    if connection_id is not None:
        statement = statement.where(Order.connection_id == connection_id)
    return [order_tracking.cancel_order(user, order_id) for order_id in list(db.session.scalars(statement))]


def move_stop(user: User, trade_id: int, stop_price: Decimal) -> Trade:
    """Move a trade's stop-loss; a broker-held stop is cancelled and placed again at the new price.

    The new price must pass the stop rule against the market now (protection.check_stop_change).
    Between the cancel and the new stop, the monitor watches the new price, and the one-live-exit
    rule keeps the monitor and the new broker stop from both selling.
    """
    trade = _own_trade(user, trade_id)
    if trade_book.open_quantity(trade) <= 0:
        raise ConflictError("Nothing is open on this trade, so it has no stop to move.")
    protection.check_stop_change(trade, stop_price, user)
    before = trade.stop_loss_price
    trade.stop_loss_price = stop_price
    audit.record(
        "protection.move_stop", actor=user, subject=trade, details={"from": str(before), "to": str(stop_price)}
    )
    db.session.commit()
    protection.protect(trade)
    return trade


def _own_trade(user: User, trade_id: int) -> Trade:
    trade = db.session.get(Trade, trade_id)
    if trade is None or trade.user_id != user.id:
        raise NotFoundError("No such trade.")
    return trade


def _position(key: tuple[int, str], trades: list[Trade]) -> Position:
    signed = [(trade_book.open_quantity(t) * (1 if trade_book.is_long(t) else -1), t) for t in trades]
    quantity = sum((q for q, _ in signed), Decimal(0))
    cost = sum((abs(q) * (t.average_fill_price or Decimal(0)) for q, t in signed), Decimal(0))
    held = sum((abs(q) for q, _ in signed), Decimal(0))
    return Position(key[0], key[1], quantity, cost / held if held else Decimal(0), trades)
