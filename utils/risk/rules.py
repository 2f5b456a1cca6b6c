"""The risk rules: one small class per rule, each answering "may this order go?" in words.

A rule's ``check`` returns None when the order passes and otherwise the reason, written for the
trader ("This order is worth $12,500.00; your limit per order is $10,000.00."). Rules raise on
inputs they cannot interpret (a wrong type, an unknown state, a non-positive price): the engine
turns any exception into a rejection, so a broken input never lets an order through.

``gates_new_exposure`` marks rules that only limit opening exposure: orders that reduce a
position (every purpose except ENTRY) skip them, so a protective or closing exit is never blocked
by a limit, a halt, a closed market or a stale quote.
"""

from __future__ import annotations

import abc
from decimal import Decimal
from typing import ClassVar

from utils.enums import OrderPurpose, TradingState
from utils.exceptions import (
    DailyTradingLimitExceededError,
    PositionSizeLimitError,
    RiskLimitExceededError,
    StopLossNotSetError,
)
from utils.money import usd
from utils.risk.inputs import OrderIntent, RiskLimits, RiskSnapshot, order_notional, reference_price, usable_price

MAX_SYMBOLS_LISTED = 10
STOP_REQUIRED = "A stop-loss is required for new positions; add one to the order."


def require_money(value: object, what: str) -> Decimal:
    """The value if it is a finite Decimal; TypeError/ValueError otherwise (floats are refused)."""
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{what} must be finite, got {value}")
    return value


def require_count(value: object, what: str) -> int:
    """The value if it is a non-negative int (bools are refused)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"{what} must be a non-negative int, got {value!r}")
    return value


def require_flag(value: object, what: str) -> bool:
    """The value if it is a real bool (a truthy string is not an answer)."""
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be a bool, got {value!r}")
    return value


def unknown_value(intent: OrderIntent) -> str:
    """The reason given when an order cannot be valued."""
    return (
        f"The value of this order cannot be determined: there is no limit price and no usable "
        f"quote for {intent.symbol}."
    )


def _money_limit(limit: Decimal | None, scope: str) -> str:
    return f"At most {usd(limit)} {scope}." if limit is not None else "No limit."


def _count_limit(limit: int | None, scope: str) -> str:
    return f"At most {limit} {scope}." if limit is not None else "No limit."


class Rule(abc.ABC):
    """One risk rule. Subclasses set ``name`` and implement ``check``."""

    name: ClassVar[str]
    # True: only limits opening exposure; exits skip it.
    gates_new_exposure: ClassVar[bool] = True
    # True: a failure means the user should be moved to REDUCING (exits only).
    enters_reducing: ClassVar[bool] = False
    # The exception raised for a rejection by this rule alone.
    error: ClassVar[type[RiskLimitExceededError]] = RiskLimitExceededError

    @abc.abstractmethod
    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        """None when the order passes this rule, otherwise the reason in a trader's words."""

    def describe(self, limits: RiskLimits) -> str:
        """The limit this rule holds the trader to, in words (shown by the order preview)."""
        return ""


# ---------------------------------------------------------------------------- who may trade


class TradingStateRule(Rule):
    """Global kill switch, the user's own state and the broker connection's: HALTED and REDUCING
    accept exits only."""

    name = "trading_state"

    def describe(self, limits: RiskLimits) -> str:
        """The limit this rule holds the trader to, in words."""
        return "The platform, your account and this broker connection must be ACTIVE."

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        """Refuse new exposure unless the platform, the user and the connection are all ACTIVE."""
        closing_note = " Orders that close or reduce a position still go through."
        platform, user = TradingState(snapshot.global_state), TradingState(snapshot.user_state)
        connection = TradingState(snapshot.connection_state)
        if platform != TradingState.ACTIVE:
            mode = "halted" if platform == TradingState.HALTED else "in reduce-only mode"
            return f"Trading is {mode} platform-wide{_because(snapshot.global_state_reason)}.{closing_note}"
        if user == TradingState.HALTED:
            return f"Trading is halted for your account{_because(snapshot.user_state_reason)}.{closing_note}"
        if user == TradingState.REDUCING:
            return f"Your account is in reduce-only mode{_because(snapshot.user_state_reason)}.{closing_note}"
        if connection != TradingState.ACTIVE:
            mode = "halted" if connection == TradingState.HALTED else "in reduce-only mode"
            reason = _because(snapshot.connection_state_reason)
            return f"Trading on this broker account is {mode}{reason}.{closing_note}"
        return None


class ExitReducesPositionRule(Rule):
    """An exit must really reduce a position: otherwise it is new exposure under another name.

    This is the one rule exits cannot skip: a "close" larger than what is open would oversell and
    open a short (LESSONS.md #2) while dodging every exposure limit.
    """

    name = "exit_reduces_position"
    gates_new_exposure = False

    def describe(self, limits: RiskLimits) -> str:
        """The limit this rule holds the trader to, in words."""
        return "A closing order must reduce an open position."

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        """Pass entries; pass exits only when the snapshot says they reduce an open position."""
        if OrderPurpose(intent.purpose) == OrderPurpose.ENTRY:
            return None
        if require_flag(snapshot.reduces_position, "reduces_position"):
            return None
        return (
            f"This closing order does not reduce an open {intent.symbol} position on this account "
            "(nothing is open, or it is larger than what is open), so it was blocked: it would open "
            "a new position."
        )


class SymbolListRule(Rule):
    """The user's allowlist (when not empty) and denylist; the denylist wins."""

    name = "symbol_lists"

    def describe(self, limits: RiskLimits) -> str:
        """The limit this rule holds the trader to, in words."""
        allowed = ", ".join(sorted(limits.symbol_allowlist)) or "any symbol"
        denied = ", ".join(sorted(limits.symbol_denylist))
        return f"Allowed: {allowed}" + (f"; never: {denied}." if denied else ".")

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        """Refuse denied symbols and, with an allowlist, every symbol not on it."""
        symbol = intent.symbol.upper()
        if symbol in {item.upper() for item in limits.symbol_denylist}:
            return f"{symbol} is on your list of blocked symbols."
        allowed = sorted(item.upper() for item in limits.symbol_allowlist)
        if allowed and symbol not in allowed:
            shown = ", ".join(allowed[:MAX_SYMBOLS_LISTED]) + (", …" if len(allowed) > MAX_SYMBOLS_LISTED else "")
            return f"{symbol} is not on your list of allowed symbols ({shown})."
        return None


class MarketHoursRule(Rule):
    """Equities open positions only while their market is open (crypto trades 24/7)."""

    name = "market_hours"

    def describe(self, limits: RiskLimits) -> str:
        """The limit this rule holds the trader to, in words."""
        return "Equities in regular market hours only." if limits.equities_market_hours_only else "Any time."

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        """Refuse an equity entry while the market is closed, when the limit asks for it."""
        if not limits.equities_market_hours_only or intent.is_crypto:
            return None
        if require_flag(snapshot.market_open, "market_open"):
            return None
        return f"The market for {intent.symbol} is closed; your account opens equity positions only in market hours."


class QuoteFreshnessRule(Rule):
    """An entry needs a quote for its symbol, with a usable price, no older than the limit."""

    name = "stale_quote"

    def describe(self, limits: RiskLimits) -> str:
        """The limit this rule holds the trader to, in words."""
        return f"A quote at most {limits.max_quote_age_seconds} s old."

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        """Refuse a missing, foreign, priceless or stale quote."""
        quote = snapshot.quote
        if quote is None:
            return f"There is no current quote for {intent.symbol}, so the order was not sent."
        if quote.symbol.upper() != intent.symbol.upper():
            return f"The quote received is for {quote.symbol}, not {intent.symbol}, so the order was not sent."
        side = "ask" if intent.is_buy else "bid"
        if usable_price(quote.ask if intent.is_buy else quote.bid) is None:
            return f"The {intent.symbol} quote has no usable {side} price right now, so the order was not sent."
        age = (snapshot.now - quote.time).total_seconds()
        max_age = require_count(limits.max_quote_age_seconds, "max_quote_age_seconds")
        if age > max_age:
            return (
                f"The latest {intent.symbol} quote is {int(age)} seconds old (the limit is {max_age} s); "
                "try again when prices update."
            )
        if age < -max_age:
            return f"The {intent.symbol} quote is dated in the future; the server clock needs checking."
        return None


# ---------------------------------------------------------------------------- how much


class MaxOrderNotionalRule(Rule):
    """The value of one order."""

    name = "max_order_notional"
    error = PositionSizeLimitError

    def describe(self, limits: RiskLimits) -> str:
        """The limit this rule holds the trader to, in words."""
        return _money_limit(limits.max_order_notional, "per order")

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        """Refuse an order worth more than the per-order limit (or of unknown value)."""
        if limits.max_order_notional is None:
            return None
        limit = require_money(limits.max_order_notional, "max_order_notional")
        notional = order_notional(intent, snapshot.quote)
        if notional is None:
            return unknown_value(intent)
        if notional > limit:
            return f"This order is worth {usd(notional)}; your limit per order is {usd(limit)}."
        return None


class MaxPositionNotionalRule(Rule):
    """The exposure in one symbol after this order."""

    name = "max_position_notional"
    error = PositionSizeLimitError

    def describe(self, limits: RiskLimits) -> str:
        """The limit this rule holds the trader to, in words."""
        return _money_limit(limits.max_position_notional, "per symbol")

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        """Refuse an order that would take the symbol's exposure over the per-symbol limit."""
        if limits.max_position_notional is None:
            return None
        limit = require_money(limits.max_position_notional, "max_position_notional")
        notional = order_notional(intent, snapshot.quote)
        if notional is None:
            return unknown_value(intent)
        after = symbol_exposure(snapshot, intent.symbol) + notional
        if after > limit:
            return (
                f"This order would bring your {intent.symbol} position to {usd(after)}; "
                f"your limit per symbol is {usd(limit)}."
            )
        return None


class MaxTotalExposureRule(Rule):
    """The exposure across all symbols after this order."""

    name = "max_total_exposure"
    error = PositionSizeLimitError

    def describe(self, limits: RiskLimits) -> str:
        """The limit this rule holds the trader to, in words."""
        return _money_limit(limits.max_total_exposure, "in all positions")

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        """Refuse an order that would take total exposure over the limit."""
        if limits.max_total_exposure is None:
            return None
        limit = require_money(limits.max_total_exposure, "max_total_exposure")
        notional = order_notional(intent, snapshot.quote)
        if notional is None:
            return unknown_value(intent)
        after = require_money(snapshot.total_exposure, "total_exposure") + notional
        if after > limit:
            return f"This order would bring your total exposure to {usd(after)}; your limit is {usd(limit)}."
        return None


class MaxOpenPositionsRule(Rule):
    """How many positions (and pending entries) may be open at once."""

    name = "max_open_positions"
    error = PositionSizeLimitError

    def describe(self, limits: RiskLimits) -> str:
        """The limit this rule holds the trader to, in words."""
        return _count_limit(limits.max_open_positions, "open positions")

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        """Refuse a new position once the count is at the limit."""
        if limits.max_open_positions is None:
            return None
        limit = require_count(limits.max_open_positions, "max_open_positions")
        current = require_count(snapshot.open_positions, "open_positions")
        if current + 1 > limit:
            return f"You already have {current} open positions (pending entries included); your limit is {limit}."
        return None


# ---------------------------------------------------------------------------- today


class MaxOrdersPerDayRule(Rule):
    """Entry orders placed since midnight UTC."""

    name = "max_orders_per_day"
    error = DailyTradingLimitExceededError

    def describe(self, limits: RiskLimits) -> str:
        """The limit this rule holds the trader to, in words."""
        return _count_limit(limits.max_orders_per_day, "new orders a day (UTC)")

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        """Refuse an entry once today's count is at the limit."""
        if limits.max_orders_per_day is None:
            return None
        limit = require_count(limits.max_orders_per_day, "max_orders_per_day")
        placed = require_count(snapshot.entry_orders_today, "entry_orders_today")
        if placed + 1 > limit:
            return f"You have placed {placed} entry orders today (UTC); your daily limit is {limit}."
        return None


class MaxDailyLossRule(Rule):
    """Realized loss since midnight UTC; hitting the limit puts the user in REDUCING."""

    name = "max_daily_loss"
    error = DailyTradingLimitExceededError
    enters_reducing = True

    def describe(self, limits: RiskLimits) -> str:
        """The limit this rule holds the trader to, in words."""
        return _money_limit(limits.max_daily_loss, "realized loss a day (UTC)")

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        """Refuse entries once today's realized loss reaches the limit."""
        if limits.max_daily_loss is None:
            return None
        limit = require_money(limits.max_daily_loss, "max_daily_loss")
        loss = -require_money(snapshot.realized_pnl_today, "realized_pnl_today")
        if loss > 0 and loss >= limit:
            return (
                f"Your realized loss today is {usd(loss)}; your daily loss limit is {usd(limit)}. "
                "Your account moves to reduce-only mode: orders that close or reduce a position still go through."
            )
        return None


# ---------------------------------------------------------------------------- protection


class StopLossRule(Rule):
    """Entries carry a stop-loss (when required) on the right side of the entry, not too far away."""

    name = "stop_loss"
    error = StopLossNotSetError

    def describe(self, limits: RiskLimits) -> str:
        """The limit this rule holds the trader to, in words."""
        distance = limits.max_stop_distance_pct
        rule = "Required" if limits.require_stop_loss else "Optional"
        return f"{rule}; at most {distance}% from the entry." if distance is not None else f"{rule}."

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        """Check presence, side and distance of the stop against the entry's reference price."""
        if intent.stop_loss_price is None:
            return STOP_REQUIRED if limits.require_stop_loss else None
        stop = require_money(intent.stop_loss_price, "stop_loss_price")
        if stop <= 0:
            return "The stop-loss price must be above zero."
        entry = reference_price(intent, snapshot.quote)
        if entry is None:
            return _no_entry_price("stop-loss", intent)
        wrong_side = _wrong_side(intent, "stop-loss", stop, entry, below_for_long=True)
        return wrong_side or stop_too_far(stop, entry, limits.max_stop_distance_pct, "the entry price")


class TakeProfitRule(Rule):
    """A take-profit, when given, sits on the profitable side of the entry."""

    name = "take_profit"

    def describe(self, limits: RiskLimits) -> str:
        """The limit this rule holds the trader to, in words."""
        return "Optional; on the profitable side of the entry."

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        """Refuse a take-profit that would close the position at once or at a loss."""
        if intent.take_profit_price is None:
            return None
        target = require_money(intent.take_profit_price, "take_profit_price")
        if target <= 0:
            return "The take-profit price must be above zero."
        entry = reference_price(intent, snapshot.quote)
        if entry is None:
            return _no_entry_price("take-profit", intent)
        return _wrong_side(intent, "take-profit", target, entry, below_for_long=False)


def _no_entry_price(what: str, intent: OrderIntent) -> str:
    return f"There is no price to check the {what} against (no limit price, no usable {intent.symbol} quote)."


def _wrong_side(intent: OrderIntent, what: str, price: Decimal, entry: Decimal, *, below_for_long: bool) -> str | None:
    """The reason when ``price`` is on the wrong side of ``entry`` for the position's direction."""
    below = below_for_long == intent.is_buy
    if (price < entry) if below else (price > entry):
        return None
    direction = "long" if intent.is_buy else "short"
    where = "below" if below else "above"
    return (
        f"The {what} at {usd(price)} is not {where} the entry price {usd(entry)}; "
        f"for a {direction} position it must be {where}."
    )


def stop_too_far(stop: Decimal, reference: Decimal, max_pct: Decimal | None, against: str) -> str | None:
    """The reason when the stop is further than ``max_pct`` percent from ``reference`` (named by ``against``)."""
    if max_pct is None:
        return None
    limit = require_money(max_pct, "max_stop_distance_pct")
    distance = abs(reference - stop) / reference * 100
    if distance > limit:
        return f"The stop-loss is {distance:.2f}% away from {against} {usd(reference)}; your limit is {limit:f}%."
    return None


def symbol_exposure(snapshot: RiskSnapshot, symbol: str) -> Decimal:
    """The snapshot's exposure in one symbol (0 when none)."""
    return require_money(snapshot.exposure_by_symbol.get(symbol.upper(), Decimal(0)), f"exposure of {symbol}")


def _because(reason: str) -> str:
    return f" ({reason})" if reason else ""


DEFAULT_RULES: tuple[Rule, ...] = (
    TradingStateRule(),
    ExitReducesPositionRule(),
    SymbolListRule(),
    MarketHoursRule(),
    QuoteFreshnessRule(),
    MaxOrderNotionalRule(),
    MaxPositionNotionalRule(),
    MaxTotalExposureRule(),
    MaxOpenPositionsRule(),
    MaxOrdersPerDayRule(),
    MaxDailyLossRule(),
    StopLossRule(),
    TakeProfitRule(),
)
