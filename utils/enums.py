"""String enums shared by the models, services and web layers.

Members are UPPER_CASE; stored values are lower-case strings, so the database stays readable and
adding a member never needs a schema change (enums are stored as VARCHAR, not native types).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """What a user may do: trade their own accounts, or also administer the platform."""

    TRADER = "trader"
    ADMIN = "admin"
    SUPERADMIN = "superadmin"


class Provider(StrEnum):
    """The broker behind a connection."""

    SCHWAB = "schwab"
    COINBASE = "coinbase"
    PAPER = "paper"


class ConnectionStatus(StrEnum):
    """Health of a broker connection as the rest of the platform sees it."""

    PENDING = "pending"
    CONNECTED = "connected"
    RECONNECT_NEEDED = "reconnect_needed"
    ERROR = "error"
    CREDENTIALS_UNREADABLE = "credentials_unreadable"
    DISABLED = "disabled"


class TradingState(StrEnum):
    """Per user and global: may new exposure be opened?"""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class OrderSide(StrEnum):
    """Direction of an order (Schwab's instructions; Coinbase uses BUY and SELL only)."""

    BUY = "buy"
    SELL = "sell"
    SELL_SHORT = "sell_short"
    BUY_TO_COVER = "buy_to_cover"


class OrderType(StrEnum):
    """How an order is priced at the broker (the original system's trade_type values)."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    TRAILING_STOP = "trailing_stop"


class TimeInForce(StrEnum):
    """How long an order rests at the broker."""

    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"


class OrderPurpose(StrEnum):
    """Why an order exists: opening exposure, or reducing it."""

    ENTRY = "entry"
    EXIT = "exit"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"


class OrderStatus(StrEnum):
    """Our order state machine (see ARCHITECTURE.md, "The order path")."""

    PENDING_SUBMIT = "pending_submit"
    SUBMITTED = "submitted"
    WORKING = "working"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCEL_PENDING = "cancel_pending"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    REPLACED = "replaced"
    UNKNOWN = "unknown"


TERMINAL_ORDER_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED, OrderStatus.REPLACED}
)
LIVE_ORDER_STATUSES = frozenset(OrderStatus) - TERMINAL_ORDER_STATUSES
EXIT_PURPOSES = frozenset(OrderPurpose) - {OrderPurpose.ENTRY}


class TradeStatus(StrEnum):
    """Life of a trade: one entry and its exits (the original system's values, extended)."""

    PENDING = "pending"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    CLOSING = "closing"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class DriftKind(StrEnum):
    """A difference between our books and a broker's, found by reconciliation."""

    ORPHAN_ORDER = "orphan_order"  # a live order at the broker that the platform did not make
    MISSING_ORDER = "missing_order"  # one of our live orders that the broker has no record of
    POSITION_MISMATCH = "position_mismatch"  # our net quantity in a symbol differs from the broker's


class ProtectionMode(StrEnum):
    """Where a trade's stop-loss lives."""

    NONE = "none"
    NATIVE = "native"
    EMULATED = "emulated"
