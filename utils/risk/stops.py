"""Stop-loss, take-profit and trailing-stop evaluation for one open position: pure code.

Which price is used
    A long is evaluated on the quote's BID: the price a market sell (its exit) would get. A short
    is evaluated on the ASK: the price a market buy-to-cover would pay. ``last`` and ``mark`` are
    never used: ``last`` can be an old print and ``mark`` is a midpoint nobody can trade at.

When it triggers
    Long: stop when bid <= stop level; take-profit when bid >= target.
    Short: stop when ask >= stop level; take-profit when ask <= target.
    The trailing stop sits ``trailing_stop_offset`` (or ``trailing_stop_percent`` of the anchor)
    behind the trail anchor, the best price seen since entry (long: highest bid, anchor - offset or
    anchor * (1 - pct/100); short: lowest ask, anchor + offset or anchor * (1 + pct/100)). The anchor
    only moves in the trade's favour and is updated with this quote before the stop is compared.
    When the fixed and trailing stops are both set, the tighter one (the effective stop) decides.

What never closes
    No quote, a quote for another symbol, a missing, zero, negative or non-Decimal price, a
    missing or naive time, a quote dated more than the max age in the future (BAD_QUOTE), or one
    older than the max age (STALE_QUOTE): the caller raises a visible alert instead (LESSONS.md
    #1). Unusable protection settings (a non-positive stop, target, offset or anchor, a percent
    not strictly between 0 and 100, or both an offset and a percent) give BAD_PROTECTION, also an
    alert. The anchor never moves on any of these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from utils.brokers.base import Quote
from utils.enums import OrderSide
from utils.money import trail_distance


class PositionSide(StrEnum):
    """Direction of an open position."""

    LONG = "long"
    SHORT = "short"

    @classmethod
    def of_entry(cls, side: OrderSide) -> PositionSide:
        """The direction a trade's entry side opened: BUY is long, SELL_SHORT is short."""
        directions = {OrderSide.BUY: cls.LONG, OrderSide.SELL_SHORT: cls.SHORT}
        if side not in directions:
            raise ValueError(f"{side!r} does not open a position")
        return directions[side]


class StopAction(StrEnum):
    """What the monitor should do with the position."""

    HOLD = "hold"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    TRAILING_STOP = "trailing_stop"
    STALE_QUOTE = "stale_quote"
    NO_QUOTE = "no_quote"
    BAD_QUOTE = "bad_quote"
    BAD_PROTECTION = "bad_protection"


CLOSE_ACTIONS = frozenset({StopAction.STOP_LOSS, StopAction.TAKE_PROFIT, StopAction.TRAILING_STOP})
ALERT_ACTIONS = frozenset(
    {StopAction.STALE_QUOTE, StopAction.NO_QUOTE, StopAction.BAD_QUOTE, StopAction.BAD_PROTECTION}
)


@dataclass(frozen=True)
class Protection:
    """One open position and its protection levels (prices Decimal, offset in price units,
    percent of the anchor; at most one of the two).

    ``symbol``, when set, must match the quote's symbol.
    """

    side: PositionSide
    open_quantity: Decimal
    stop_loss_price: Decimal | None = None
    take_profit_price: Decimal | None = None
    trailing_stop_offset: Decimal | None = None
    trail_anchor: Decimal | None = None
    symbol: str | None = None
    trailing_stop_percent: Decimal | None = None

    @property
    def trails(self) -> bool:
        """True when the position has a trailing stop (by amount or by percent)."""
        return self.trailing_stop_offset is not None or self.trailing_stop_percent is not None


@dataclass(frozen=True)
class StopDecision:
    """The outcome for one position.

    ``price`` is the quote price evaluated (bid for a long, ask for a short); ``trigger_price``
    the level crossed; ``trail_anchor`` the anchor to store (``anchor_moved`` says whether it
    changed); ``trailing_stop_price`` the trailing stop level after the update.
    """

    action: StopAction
    reason: str
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    trail_anchor: Decimal | None = None
    anchor_moved: bool = False
    trailing_stop_price: Decimal | None = None

    @property
    def closes(self) -> bool:
        """True when the position should be closed with a market order."""
        return self.action in CLOSE_ACTIONS

    @property
    def needs_alert(self) -> bool:
        """True when the position could not be evaluated: raise a visible alert, never close."""
        return self.action in ALERT_ACTIONS


def evaluate(position: Protection, quote: Quote | None, now: datetime, max_quote_age_seconds: int) -> StopDecision:
    """Decide HOLD, a close (stop, trailing stop, take-profit) or an alert for one position."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    side = PositionSide(position.side)
    keep = position.trail_anchor
    problem = _protection_problem(position)
    if problem is not None:
        return StopDecision(StopAction.BAD_PROTECTION, problem, trail_anchor=keep)
    if position.open_quantity <= 0:
        return StopDecision(StopAction.HOLD, "Nothing is open to protect.", trail_anchor=keep)
    if quote is None:
        return StopDecision(StopAction.NO_QUOTE, "No quote was received for this position.", trail_anchor=keep)
    refusal = quote_problem(side, position.symbol, quote, now, max_quote_age_seconds)
    if refusal is not None:
        return StopDecision(refusal[0], refusal[1], trail_anchor=keep)
    return _decide(position, side, quote.bid if side == PositionSide.LONG else quote.ask)


def moved_anchor(side: PositionSide, anchor: Decimal | None, price: Decimal) -> Decimal:
    """The trail anchor after seeing ``price``: it only moves in the trade's favour."""
    if anchor is None:
        return price
    return max(anchor, price) if side == PositionSide.LONG else min(anchor, price)


def trailing_level(side: PositionSide, anchor: Decimal, offset: Decimal) -> Decimal:
    """The trailing stop level: offset behind the anchor (below for a long, above for a short)."""
    return anchor - offset if side == PositionSide.LONG else anchor + offset


def effective_stop(side: PositionSide, stop: Decimal | None, trailing: Decimal | None) -> Decimal | None:
    """The tighter of the fixed and trailing stops (the higher for a long, the lower for a short)."""
    levels = [level for level in (stop, trailing) if level is not None]
    if not levels:
        return None
    return max(levels) if side == PositionSide.LONG else min(levels)


def _decide(position: Protection, side: PositionSide, price: Decimal) -> StopDecision:
    anchor, trailing = position.trail_anchor, None
    if position.trails:
        anchor = moved_anchor(side, position.trail_anchor, price)
        distance = trail_distance(anchor, position.trailing_stop_offset, position.trailing_stop_percent)
        trailing = trailing_level(side, anchor, distance)
    action, reason, trigger = _verdict(position, side, price, trailing)
    return StopDecision(
        action,
        reason,
        price=price,
        trigger_price=trigger,
        trail_anchor=anchor,
        anchor_moved=anchor != position.trail_anchor,
        trailing_stop_price=trailing,
    )


def _verdict(
    position: Protection, side: PositionSide, price: Decimal, trailing: Decimal | None
) -> tuple[StopAction, str, Decimal | None]:
    """Stops before the take-profit: with inconsistent levels, protecting capital wins."""
    word = "bid" if side == PositionSide.LONG else "ask"
    stop = effective_stop(side, position.stop_loss_price, trailing)
    if stop is not None and _crossed(side, price, stop, adverse=True):
        if stop == position.stop_loss_price:
            return StopAction.STOP_LOSS, f"The {word} {price} crossed the stop-loss at {stop}.", stop
        return StopAction.TRAILING_STOP, f"The {word} {price} crossed the trailing stop at {stop}.", stop
    target = position.take_profit_price
    if target is not None and _crossed(side, price, target, adverse=False):
        return StopAction.TAKE_PROFIT, f"The {word} {price} reached the take-profit at {target}.", target
    return StopAction.HOLD, f"The {word} {price} is inside the protection levels.", None


def _crossed(side: PositionSide, price: Decimal, level: Decimal, *, adverse: bool) -> bool:
    """Long stop: price <= level; long target: price >= level; shorts mirrored."""
    falls = (side == PositionSide.LONG) == adverse
    return price <= level if falls else price >= level


def _protection_problem(position: Protection) -> str | None:
    percent = position.trailing_stop_percent
    if percent is not None and position.trailing_stop_offset is not None:
        return "The position trails by both an amount and a percent; it must be one or the other."
    if isinstance(percent, Decimal) and percent.is_finite() and percent >= 100:
        return f"The position's trailing percent must be below 100, not {percent}."
    named = (
        ("open quantity", position.open_quantity, False),
        ("stop-loss", position.stop_loss_price, True),
        ("take-profit", position.take_profit_price, True),
        ("trailing offset", position.trailing_stop_offset, True),
        ("trailing percent", percent, True),
        ("trail anchor", position.trail_anchor, True),
    )
    for what, value, must_be_positive in named:
        if value is None and what != "open quantity":
            continue
        if not isinstance(value, Decimal) or not value.is_finite():
            return f"The position's {what} is not a usable number ({value!r})."
        if must_be_positive and value <= 0:
            return f"The position's {what} must be above zero, not {value}."
    return None


def quote_problem(
    side: PositionSide, symbol: str | None, quote: Quote, now: datetime, max_age: int
) -> tuple[StopAction, str] | None:
    """Why the quote cannot be acted on for this side (foreign, priceless, undated, stale), or None."""
    if symbol is not None and getattr(quote, "symbol", None) != symbol:
        return StopAction.BAD_QUOTE, f"The quote is for {getattr(quote, 'symbol', None)!r}, not {symbol!r}."
    word = "bid" if side == PositionSide.LONG else "ask"
    price = getattr(quote, word, None)
    if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
        return StopAction.BAD_QUOTE, f"The quote's {word} is missing or not a positive price ({price!r})."
    time = getattr(quote, "time", None)
    if not isinstance(time, datetime) or time.tzinfo is None:
        return StopAction.BAD_QUOTE, "The quote has no timezone-aware time."
    age = (now - time).total_seconds()
    if age > max_age:
        return StopAction.STALE_QUOTE, f"The quote is {int(age)} seconds old (the limit is {max_age} s)."
    if age < -max_age:
        return StopAction.BAD_QUOTE, f"The quote is dated {int(-age)} seconds in the future."
    return None
