"""The trader's overview: money per connection and in total, P&L, trading state, connection health.

Balances: one broker call per connection per BALANCE_CACHE_SECONDS (shared through Redis when
REDIS_URL is set). A failed call is remembered just as long, so a broken connection costs one call
per period and shows as unavailable while the others still count in the totals.

P&L, from our own trade book: realized = closed trades' realized P&L plus, for open trades, the
exited part and every fee paid so far; unrealized = open quantity at the latest (briefly cached)
quote. "Day" is the UTC calendar day for every market (crypto trades around the clock, so one
boundary for all): day P&L = equity now minus the equity of the last snapshot taken before
00:00 UTC, per connection that has both (equity_snapshots, written by a periodic task).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal

from flask import current_app

from models import BrokerConnection, EquitySnapshot, Trade, User
from utils.brokers.base import Balance
from utils.enums import ConnectionStatus, TradeStatus
from utils.exceptions import ArbionError
from utils.extensions import db
from utils.money import utcnow
from utils.observability import get_logger
from utils.services import connections, positions, schwab_logins, short_cache, trade_book, trading_state
from utils.services.positions import Mark, Position

log = get_logger(__name__)
ZERO = Decimal(0)
TOTAL_CURRENCY = "USD"  # totals add up accounts in this currency; others are shown, not added
NOT_CALLED = {
    ConnectionStatus.PENDING: "Not connected yet.",
    ConnectionStatus.RECONNECT_NEEDED: "Reconnect needed.",
    ConnectionStatus.DISABLED: "Disabled.",
}


@dataclass(frozen=True)
class AccountFigures:
    """One connection on the overview: its balance, or why it is unavailable, and its health."""

    connection: BrokerConnection
    balance: Balance | None
    problem: str
    days_left: float | None
    opening_equity: Decimal | None

    @property
    def day_pnl(self) -> Decimal | None:
        """Equity now minus at the start of the UTC day (None when either is unknown)."""
        if self.balance is None or self.opening_equity is None:
            return None
        return self.balance.equity - self.opening_equity

    @property
    def in_total(self) -> bool:
        """Whether this account's money is added into the totals."""
        return self.balance is not None and self.balance.currency == TOTAL_CURRENCY


@dataclass(frozen=True)
class ProfitAndLoss:
    """Realized and unrealized P&L from the trade book; ``unpriced`` positions have no quote now."""

    realized_today: Decimal
    realized: Decimal
    unrealized: Decimal
    unpriced: int
    trades: int

    @property
    def total(self) -> Decimal:
        """Realized plus unrealized."""
        return self.realized + self.unrealized


@dataclass(frozen=True)
class Overview:
    """Everything the home page shows, computed once per request."""

    accounts: list[AccountFigures]
    pnl: ProfitAndLoss
    trading: trading_state.TradingStatus
    positions: list[Position]
    marks: dict[tuple[int, str], Mark]
    as_of: datetime

    def _sum(self, field: str) -> Decimal:
        return sum((getattr(a.balance, field) for a in self.accounts if a.in_total and a.balance), ZERO)

    @property
    def cash(self) -> Decimal:
        """Cash of every available account in TOTAL_CURRENCY."""
        return self._sum("cash")

    @property
    def buying_power(self) -> Decimal:
        """Buying power of every available account in TOTAL_CURRENCY."""
        return self._sum("buying_power")

    @property
    def equity(self) -> Decimal:
        """Equity of every available account in TOTAL_CURRENCY."""
        return self._sum("equity")

    @property
    def day_pnl(self) -> Decimal | None:
        """Sum of the accounts' day P&L (None when no account has one yet)."""
        known = [a.day_pnl for a in self.accounts if a.in_total and a.day_pnl is not None]
        return sum(known, ZERO) if known else None

    def label(self, connection_id: int) -> str:
        """The name of one of the user's connections."""
        return next((a.connection.label for a in self.accounts if a.connection.id == connection_id), "")

    @property
    def complete(self) -> bool:
        """True when every account could be read (the totals are not partial)."""
        return all(a.in_total for a in self.accounts)


def overview(user: User) -> Overview:
    """The user's overview: balances (cached briefly), P&L, trading state and connection health."""
    now = utcnow()
    opening = opening_equity(user, start_of_day(now))
    accounts = [
        AccountFigures(c, *connection_balance(c), schwab_logins.days_left(c, now), opening.get(c.id))
        for c in connections.list_connections(user)
    ]
    held = positions.open_positions(user)
    marks = positions.marks(held)
    pnl = profit_and_loss(user, held, marks, start_of_day(now))
    return Overview(accounts, pnl, trading_state.user_trading_state(user), held, marks, now)


def start_of_day(moment: datetime) -> datetime:
    """00:00 UTC of ``moment``'s UTC date: where the dashboard's "day" begins."""
    return datetime.combine(moment.astimezone(UTC).date(), time.min, tzinfo=UTC)


def connection_balance(connection: BrokerConnection) -> tuple[Balance | None, str]:
    """(balance, "") or (None, why it is unavailable): one broker call per BALANCE_CACHE_SECONDS."""
    if connection.status != ConnectionStatus.CONNECTED:
        return None, connection.status_detail or NOT_CALLED.get(connection.status, "Unavailable.")
    key = f"arbion:balance:{connection.id}:{connection.created_at.timestamp()}"
    cached = short_cache.read(key)
    if cached is not None:
        return _decoded(cached)
    found = _fetch_balance(connection)
    short_cache.write(key, _encoded(*found), current_app.config["BALANCE_CACHE_SECONDS"])
    return found


def _fetch_balance(connection: BrokerConnection) -> tuple[Balance | None, str]:
    try:
        return connections.broker_for(connection).balance(connections.trading_account_id(connection)), ""
    except ArbionError as exc:
        log.warning("portfolio.balance_unavailable", connection_id=connection.id, error=exc.code)
        return None, exc.message
    except Exception:  # a read for display: one broken client must not break the page (logged)
        log.exception("portfolio.balance_failed", connection_id=connection.id)
        return None, "The broker's answer could not be read."


def _encoded(balance: Balance | None, problem: str) -> str:
    if balance is None:
        return json.dumps({"problem": problem})
    amounts = {name: str(getattr(balance, name)) for name in ("cash", "buying_power", "equity")}
    return json.dumps({"currency": balance.currency, **amounts})


def _decoded(raw: str) -> tuple[Balance | None, str]:
    data = json.loads(raw)
    if "problem" in data:
        return None, str(data["problem"])
    amounts = {name: Decimal(data[name]) for name in ("cash", "buying_power", "equity")}
    return Balance(currency=data["currency"], **amounts), ""


def opening_equity(user: User, day_start: datetime) -> dict[int, Decimal]:
    """Per connection: the equity of its last snapshot before ``day_start``."""
    latest = (
        db.select(EquitySnapshot.connection_id, db.func.max(EquitySnapshot.taken_at).label("taken_at"))
        .where(EquitySnapshot.user_id == user.id, EquitySnapshot.taken_at < day_start)
        .group_by(EquitySnapshot.connection_id)
        .subquery()
    )
    statement = db.select(EquitySnapshot.connection_id, EquitySnapshot.equity).join(
        latest,
        (EquitySnapshot.connection_id == latest.c.connection_id) & (EquitySnapshot.taken_at == latest.c.taken_at),
    )
    return {row.connection_id: row.equity for row in db.session.execute(statement)}


def profit_and_loss(
    user: User, held: list[Position], marks: dict[tuple[int, str], Mark], day_start: datetime
) -> ProfitAndLoss:
    """Realized (closed trades, and open trades' exits and fees) and unrealized P&L at the marks."""
    closed = db.session.execute(
        db.select(Trade.realized_pnl, Trade.closed_at).where(
            Trade.user_id == user.id, Trade.status == TradeStatus.CLOSED
        )
    ).all()
    open_trades = [trade for position in held for trade in position.trades]
    realized = sum((pnl or ZERO for pnl, _ in closed), ZERO)
    realized += sum((trade_book.realized_pnl(trade) for trade in open_trades), ZERO)
    today = sum((pnl or ZERO for pnl, closed_at in closed if closed_at and closed_at >= day_start), ZERO)
    priced = [marks[(p.connection_id, p.symbol)] for p in held]
    unrealized = sum((value for mark in priced for value in mark.unrealized_pnl.values()), ZERO)
    unpriced = sum(mark.price is None for mark in priced)
    return ProfitAndLoss(today, realized, unrealized, unpriced, len(closed) + len(open_trades))
