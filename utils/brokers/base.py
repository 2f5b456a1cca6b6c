"""The one broker interface: typed, frozen dataclasses in and out, capabilities as data.

Every broker client (paper, Schwab, Coinbase) implements ``Broker``. Amounts are Decimal,
times are aware UTC. Clients do network I/O only (no database); errors are mapped once per
client into utils/exceptions.py:

- ``BrokerTemporaryError`` (and ``RateLimitExceededError`` with ``details["retry_after"]``):
  worth retrying later; for a write it is raised only when the broker certainly did NOT see it;
- ``AuthenticationError`` / ``TokenExpiredError``: the connection needs attention;
- ``OrderRejectedError``: the broker refused the order; ``message`` is its reason in words;
- ``UnknownOrderOutcomeError``: a write whose result we did not see. Never resend: reconcile.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from utils.enums import TERMINAL_ORDER_STATUSES, OrderSide, OrderStatus, OrderType, TimeInForce


@dataclass(frozen=True)
class Capabilities:
    """What a broker can do natively; later code decides "native or emulated" from this."""

    native_stop: bool
    stop_limit: bool
    trailing_stop: bool
    bracket: bool
    replace: bool
    fractional_quantity: bool
    always_open: bool
    max_symbols_per_quote: int
    order_writes_per_minute: int
    replace_keeps_id: bool = False


@dataclass(frozen=True)
class Quote:
    """Top of book for one symbol. ``last`` and ``mark`` may equal bid/ask midpoints on crypto."""

    symbol: str
    bid: Decimal
    ask: Decimal
    last: Decimal
    mark: Decimal
    time: datetime


@dataclass(frozen=True)
class BrokerAccount:
    """An account at the broker. ``account_id`` is what other calls take (Schwab: the hash)."""

    account_id: str
    display_number: str
    description: str = ""


@dataclass(frozen=True)
class Balance:
    """Money in one account, in its currency."""

    currency: str
    cash: Decimal
    buying_power: Decimal
    equity: Decimal


@dataclass(frozen=True)
class BrokerPosition:
    """A holding as the broker reports it; ``quantity`` is negative for a short."""

    symbol: str
    quantity: Decimal
    average_price: Decimal
    market_value: Decimal


@dataclass(frozen=True)
class OrderRequest:
    """An order to send. ``client_order_id`` is ours, persisted before sending.

    A trailing stop trails by ``trail_offset`` (price units) or ``trail_percent`` (of the best
    price seen, 0 < percent < 100), never both.
    """

    symbol: str
    side: OrderSide
    quantity: Decimal
    order_type: OrderType
    client_order_id: str
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_offset: Decimal | None = None
    trail_percent: Decimal | None = None


@dataclass(frozen=True)
class Fill:
    """One execution. ``fill_id`` is stable across polls, so a fill is recorded once."""

    fill_id: str
    quantity: Decimal
    price: Decimal
    time: datetime
    commission: Decimal = Decimal(0)


@dataclass(frozen=True)
class BrokerOrder:
    """An order as the broker reports it, its status mapped to our state names."""

    broker_order_id: str
    symbol: str
    side: OrderSide
    order_type: OrderType
    status: OrderStatus
    quantity: Decimal
    filled_quantity: Decimal
    remaining_quantity: Decimal
    average_fill_price: Decimal | None
    client_order_id: str | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    entered_at: datetime | None = None
    closed_at: datetime | None = None
    status_detail: str = ""
    fees: Decimal = Decimal(0)
    fills: tuple[Fill, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Transaction:
    """A cash or trade movement in an account (trades, fees, deposits, dividends)."""

    transaction_id: str
    kind: str
    time: datetime
    amount: Decimal
    description: str = ""
    symbol: str | None = None


@dataclass(frozen=True)
class MarketHours:
    """Whether a market is open at a moment, and its session bounds that day (None: closed all day)."""

    is_open: bool
    opens_at: datetime | None
    closes_at: datetime | None


class CandleInterval(StrEnum):
    """Bar lengths every broker serves (Schwab has no hourly bars, so none is offered)."""

    ONE_MINUTE = "1m"
    FIVE_MINUTES = "5m"
    FIFTEEN_MINUTES = "15m"
    THIRTY_MINUTES = "30m"
    ONE_DAY = "1d"

    @property
    def length(self) -> timedelta:
        """How much time one bar covers."""
        return _CANDLE_LENGTHS[self]


_CANDLE_LENGTHS = {
    CandleInterval.ONE_MINUTE: timedelta(minutes=1),
    CandleInterval.FIVE_MINUTES: timedelta(minutes=5),
    CandleInterval.FIFTEEN_MINUTES: timedelta(minutes=15),
    CandleInterval.THIRTY_MINUTES: timedelta(minutes=30),
    CandleInterval.ONE_DAY: timedelta(days=1),
}


@dataclass(frozen=True)
class Candle:
    """One bar of price history starting at ``time`` (aware UTC)."""

    time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = Decimal(0)


TERMINAL_STATUSES = TERMINAL_ORDER_STATUSES


class Broker(abc.ABC):
    """One broker connection's operations. Implementations: paper, Schwab, Coinbase."""

    capabilities: Capabilities

    @abc.abstractmethod
    def accounts(self) -> list[BrokerAccount]:
        """The accounts this connection can trade."""

    @abc.abstractmethod
    def balance(self, account_id: str) -> Balance:
        """Cash, buying power and equity of one account."""

    @abc.abstractmethod
    def positions(self, account_id: str) -> list[BrokerPosition]:
        """Open positions of one account."""

    @abc.abstractmethod
    def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """Quotes for many symbols (batched by ``max_symbols_per_quote``); unknown symbols are absent."""

    @abc.abstractmethod
    def place_order(self, account_id: str, request: OrderRequest) -> BrokerOrder:
        """Send a new order. Raises UnknownOrderOutcomeError when the result was not seen."""

    @abc.abstractmethod
    def get_order(self, account_id: str, broker_order_id: str) -> BrokerOrder:
        """The current state of one order, fills included."""

    @abc.abstractmethod
    def cancel_order(self, account_id: str, broker_order_id: str) -> None:
        """Ask the broker to cancel; OrderCancellationError when it refuses."""

    @abc.abstractmethod
    def replace_order(self, account_id: str, broker_order_id: str, request: OrderRequest) -> BrokerOrder:
        """Replace a working order. The answer carries the order's id after the replace: a NEW id
        at Schwab and the paper broker (the old order becomes REPLACED), the SAME id at Coinbase,
        which edits in place (``capabilities.replace_keeps_id``)."""

    @abc.abstractmethod
    def list_orders(
        self, account_id: str, since: datetime, until: datetime, status: OrderStatus | None = None
    ) -> list[BrokerOrder]:
        """Orders entered in a time window, optionally of one status."""

    @abc.abstractmethod
    def fills(self, account_id: str, broker_order_id: str) -> list[Fill]:
        """Executions of one order."""

    @abc.abstractmethod
    def transactions(self, account_id: str, since: datetime, until: datetime) -> list[Transaction]:
        """Account activity in a time window."""

    @abc.abstractmethod
    def market_hours(self, symbol: str, at: datetime) -> MarketHours:
        """Whether the symbol's market is open at ``at``."""

    @abc.abstractmethod
    def price_increment(self, symbol: str, price: Decimal) -> Decimal:
        """The step an order price for ``symbol`` near ``price`` must be a whole multiple of."""

    @abc.abstractmethod
    def candles(self, symbol: str, interval: CandleInterval, start: datetime, end: datetime) -> list[Candle]:
        """Price bars starting in [start, end), oldest first; an unknown symbol has none."""
