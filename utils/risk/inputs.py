"""What a risk check reads: resolved limits, the order intent and a snapshot of the account.

All frozen, all money Decimal, all times aware UTC. utils/services/risk.py builds them from the
database; tests build them by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from utils.brokers.base import Quote
from utils.enums import OrderPurpose, OrderSide, OrderType, TradingState

BUY_SIDES = frozenset({OrderSide.BUY, OrderSide.BUY_TO_COVER})
# Orders whose price is capped by their limit price.
LIMIT_PRICED = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})


def looks_like_crypto(symbol: str) -> bool:
    """Crypto products are quoted as BASE-QUOTE ("BTC-USD"); equity symbols never contain a dash."""
    return "-" in symbol


@dataclass(frozen=True)
class RiskLimits:
    """One user's limits after resolving their settings over the configured defaults.

    ``None`` means "no limit" for the limits where that makes sense. An empty allowlist allows
    every symbol; the denylist always wins.
    """

    max_order_notional: Decimal | None = None
    max_position_notional: Decimal | None = None
    max_total_exposure: Decimal | None = None
    max_open_positions: int | None = None
    max_orders_per_day: int | None = None
    max_daily_loss: Decimal | None = None
    symbol_allowlist: frozenset[str] = frozenset()
    symbol_denylist: frozenset[str] = frozenset()
    equities_market_hours_only: bool = True
    max_quote_age_seconds: int = 30
    require_stop_loss: bool = True
    max_stop_distance_pct: Decimal | None = None


@dataclass(frozen=True)
class OrderIntent:
    """An order someone wants to place, before anything is stored or sent.

    ``crypto`` says whether the symbol trades around the clock; ``None`` decides from the symbol
    (see ``looks_like_crypto``).
    """

    symbol: str
    side: OrderSide
    quantity: Decimal
    order_type: OrderType = OrderType.MARKET
    purpose: OrderPurpose = OrderPurpose.ENTRY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    stop_loss_price: Decimal | None = None
    take_profit_price: Decimal | None = None
    crypto: bool | None = None

    @property
    def is_crypto(self) -> bool:
        """True for symbols that trade 24/7 (no market-hours rule)."""
        return self.crypto if self.crypto is not None else looks_like_crypto(self.symbol)

    @property
    def is_buy(self) -> bool:
        """True when the order buys (opens a long, or covers a short)."""
        return self.side in BUY_SIDES

    @property
    def is_entry(self) -> bool:
        """True when the order opens exposure; every other purpose reduces a position."""
        return self.purpose == OrderPurpose.ENTRY


@dataclass(frozen=True)
class RiskSnapshot:
    """The account as the risk engine sees it at ``now``.

    Exposure is gross notional (longs and shorts both count) per symbol across all of the user's
    connections, as computed by the caller (utils/services/risk.py: at cost, plus what live entry
    orders could still add). ``realized_pnl_today`` is negative for a loss.
    ``reduces_position`` says whether this order only reduces an existing position on its
    connection (a sell against a long, a cover against a short, no bigger than what is open).
    ``connection_state`` is the state of the broker connection the order goes to: REDUCING while
    its reconciliation with the broker fails (utils/services/reconcile.py).
    """

    now: datetime
    user_state: TradingState = TradingState.ACTIVE
    global_state: TradingState = TradingState.ACTIVE
    quote: Quote | None = None
    market_open: bool = True
    exposure_by_symbol: Mapping[str, Decimal] = field(default_factory=dict)
    total_exposure: Decimal = Decimal(0)
    open_positions: int = 0
    entry_orders_today: int = 0
    realized_pnl_today: Decimal = Decimal(0)
    reduces_position: bool = False
    user_state_reason: str = ""
    global_state_reason: str = ""
    connection_state: TradingState = TradingState.ACTIVE
    connection_state_reason: str = ""


def reference_price(intent: OrderIntent, quote: Quote | None) -> Decimal | None:
    """The price an order is valued at, or None when it cannot be known.

    Limit and stop-limit orders: the limit price. Otherwise the quote side the order would trade
    against: the ask for buys, the bid for sells. Stop orders take the higher of that and their
    stop price, the cautious value (a buy stop above the market fills near its stop, not at
    today's ask).
    """
    if intent.order_type in LIMIT_PRICED:
        return None if intent.limit_price is None else _positive(intent.limit_price, "limit price")
    market = None if quote is None else usable_price(quote.ask if intent.is_buy else quote.bid)
    if intent.order_type == OrderType.STOP and intent.stop_price is not None:
        stop = _positive(intent.stop_price, "stop price")
        return stop if market is None else max(stop, market)
    return market


def order_notional(intent: OrderIntent, quote: Quote | None) -> Decimal | None:
    """Quantity times the reference price; None when the price is unknown."""
    price = reference_price(intent, quote)
    if price is None:
        return None
    return _positive(intent.quantity, "quantity") * price


def usable_price(value: Decimal | None) -> Decimal | None:
    """A quote price if it is a positive finite Decimal, else None (a zero bid is "no price")."""
    if value is None:
        return None
    if not isinstance(value, Decimal):
        raise TypeError(f"quote prices must be Decimal, got {type(value).__name__}")
    return value if value.is_finite() and value > 0 else None


def _positive(value: Decimal, what: str) -> Decimal:
    """Pass a positive finite Decimal through; refuse anything else loudly (fail closed)."""
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{what} must be a positive number, got {value}")
    return value
