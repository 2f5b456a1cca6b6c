"""Hand-built risk inputs: a baseline entry that every default rule allows, changed per test."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from utils.brokers.base import Quote
from utils.enums import OrderPurpose, OrderSide, OrderType
from utils.risk.inputs import OrderIntent, RiskLimits, RiskSnapshot

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
D = Decimal


def quote(symbol: str = "AAPL", bid: str = "99.99", ask: str = "100.01", age: float = 1, **extra: Any) -> Quote:
    """A quote ``age`` seconds old at NOW (last/mark at the midpoint unless given)."""
    mid = (D(bid) + D(ask)) / 2 if D(bid) > 0 and D(ask) > 0 else D(0)
    fields = {"last": mid, "mark": mid, "time": NOW - timedelta(seconds=age), **extra}
    return Quote(symbol=symbol, bid=D(bid), ask=D(ask), **fields)


def intent(**changes: Any) -> OrderIntent:
    """Buy 10 AAPL at market with a stop at 95 and a take-profit at 110 (worth $1,000.10 at the ask)."""
    base = OrderIntent(
        symbol="AAPL",
        side=OrderSide.BUY,
        quantity=D(10),
        order_type=OrderType.MARKET,
        purpose=OrderPurpose.ENTRY,
        stop_loss_price=D(95),
        take_profit_price=D(110),
    )
    return replace(base, **changes)


def exit_intent(**changes: Any) -> OrderIntent:
    """Sell 10 AAPL at market to close a long (no stop, no target)."""
    base = intent(side=OrderSide.SELL, purpose=OrderPurpose.EXIT, stop_loss_price=None, take_profit_price=None)
    return replace(base, **changes)


def snapshot(**changes: Any) -> RiskSnapshot:
    """An ACTIVE account with nothing open, the market open and a fresh AAPL quote."""
    return replace(RiskSnapshot(now=NOW, quote=quote()), **changes)


def limits(**changes: Any) -> RiskLimits:
    """The configured defaults."""
    base = RiskLimits(
        max_order_notional=D(25000),
        max_position_notional=D(50000),
        max_total_exposure=D(250000),
        max_open_positions=20,
        max_orders_per_day=200,
        max_daily_loss=D(5000),
        equities_market_hours_only=True,
        max_quote_age_seconds=30,
        require_stop_loss=True,
        max_stop_distance_pct=D(20),
    )
    return replace(base, **changes)
