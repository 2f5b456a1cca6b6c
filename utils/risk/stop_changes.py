"""The one rule every change to a position's stop-loss passes, judged against the market now.

A stop protects an open position from where the market is, not from where the trade was entered,
so a new stop price must:

- sit on the protective side of the price the exit would trade at: below the BID for a long, above
  the ASK for a short (at or through it, the stop would fire at once);
- be no further from that price than the trader's max stop distance (``max_stop_distance_pct``),
  so a "stop" at $0.01 under a $98,866 bitcoin does not leave the position unprotected in all but
  name;
- be a whole number of the instrument's price increments (Coinbase's ``quote_increment``,
  Schwab's cent at $1 or above and hundredth of a cent below, the paper broker's cent): a price the
  broker would refuse or round is refused here, never rounded silently.

A stop in profit (above a long's entry: break-even, locking in gains) is allowed whenever the market
is beyond it. Fail closed: no quote, a stale, foreign or priceless one, or an unknown increment
refuses the change with a reason. Pure: the caller passes the quote, the increment and the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from utils.brokers.base import Quote
from utils.money import decimal_text, usd
from utils.risk.rules import stop_too_far
from utils.risk.stops import PositionSide, quote_problem

UNCHANGED = "The stop was left where it was."


@dataclass(frozen=True)
class StopChange:
    """A proposed stop-loss price for one open position, with what it is judged by.

    ``price_increment`` is the instrument's tick near the stop (None when the broker could not say);
    ``max_distance_pct`` is None for no distance limit.
    """

    symbol: str
    side: PositionSide
    stop_price: Decimal
    quote: Quote | None
    price_increment: Decimal | None
    max_distance_pct: Decimal | None
    max_quote_age_seconds: int
    now: datetime


def stop_change_problem(change: StopChange) -> str | None:
    """None when the new stop may be placed, otherwise why not, in the trader's words."""
    problem = _first_problem(change)
    return None if problem is None else f"{problem} {UNCHANGED}"


def _first_problem(change: StopChange) -> str | None:
    stop = change.stop_price
    if not isinstance(stop, Decimal) or not stop.is_finite() or stop <= 0:
        return "The stop price must be a number above 0."
    market = _market_price(change)
    if isinstance(market, str):
        return market
    return (
        _wrong_side(change.side, stop, market)
        or stop_too_far(stop, market, change.max_distance_pct, _market_words(change.side))
        or off_increment(change.symbol, stop, change.price_increment)
    )


def off_increment(symbol: str, price: Decimal, increment: Decimal | None) -> str | None:
    """Why ``price`` is not a whole number of the symbol's price increments (or the increment is unknown)."""
    if not isinstance(increment, Decimal) or not increment.is_finite() or increment <= 0:
        return f"The price increment of {symbol} is not known right now, so the price cannot be checked."
    try:
        if price % increment == 0:
            return None
        nearest = (price // increment) * increment
    except InvalidOperation:  # more steps than Decimal's precision holds: no broker takes such a price
        return f"{_shown(price)} is not a price {symbol} can trade at."
    step = decimal_text(increment)
    return f"{symbol} prices move in steps of {step}; {_shown(price)} is not one (try {_shown(nearest)})."


def _market_price(change: StopChange) -> Decimal | str:
    """The price the position's exit would trade at now (bid for a long, ask for a short), or why none."""
    if change.now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if change.quote is None:
        return f"There is no current {change.symbol} quote to check the stop against."
    problem = quote_problem(change.side, change.symbol, change.quote, change.now, change.max_quote_age_seconds)
    if problem is not None:
        return f"{problem[1]} The stop is checked against the current price."
    return change.quote.bid if change.side == PositionSide.LONG else change.quote.ask


def _wrong_side(side: PositionSide, stop: Decimal, market: Decimal) -> str | None:
    """The reason when the stop is at or through the market: it would close the position at once."""
    long = side == PositionSide.LONG
    if (stop < market) if long else (stop > market):
        return None
    where, exit_word = ("below", "sell") if long else ("above", "buy back")
    return (
        f"A stop at {_shown(stop)} is not {where} {_market_words(side)} {_shown(market)}: it would {exit_word} "
        f"at once. For a {side.value} position the stop must be {where} {_market_words(side)}."
    )


def _market_words(side: PositionSide) -> str:
    return "the bid" if side == PositionSide.LONG else "the ask"


def _shown(price: Decimal) -> str:
    """A price as typed when it has more than cents, else as dollars ("$98,866.00")."""
    exponent = price.normalize().as_tuple().exponent
    return usd(price) if isinstance(exponent, int) and exponent >= -2 else f"${decimal_text(price)}"
