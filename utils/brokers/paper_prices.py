"""Synthetic, deterministic prices for the paper broker, and US equity market hours.

A price is a pure function of (seed, symbol, time): no stored state, the same answer in any
process. Each symbol follows a geometric Brownian motion ``base * exp(sigma * (W(t) - W(t_ref)))``
whose Brownian path W is built by random midpoint displacement (a Brownian bridge) over a dyadic
grid of 2**36 one-second steps. The normal at each grid point comes from a blake2b hash of
(seed, symbol, point) through the inverse normal CDF, so one quote costs O(log T) hashes.
Anchoring on ``t_ref`` (early 2025) keeps today's prices near each symbol's base level.

Equities ("AAPL", "BRK.B") walk in *trading* seconds only: their price is frozen outside the
regular session, 09:30-16:00 America/New_York, Monday to Friday. Exchange holidays and early
closes are deliberately ignored: the paper market is open on every weekday. Crypto symbols
("BTC-USD") walk in wall-clock seconds and trade 24/7.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from statistics import NormalDist
from zoneinfo import ZoneInfo

from utils.brokers.base import Candle, CandleInterval, MarketHours, Quote

NEW_YORK = ZoneInfo("America/New_York")
SESSION_OPEN = time(9, 30)
SESSION_CLOSE = time(16, 0)
SESSION_SECONDS = 6 * 3600 + 30 * 60
PRICE_TICK = Decimal("0.01")

EQUITY_ANNUAL_VOLATILITY = 0.30
CRYPTO_ANNUAL_VOLATILITY = 0.60
EQUITY_SPREAD_BPS = Decimal("1")
CRYPTO_SPREAD_BPS = Decimal("5")
_EQUITY_SIGMA = EQUITY_ANNUAL_VOLATILITY / math.sqrt(252 * SESSION_SECONDS)  # per trading second
_CRYPTO_SIGMA = CRYPTO_ANNUAL_VOLATILITY / math.sqrt(365 * 86400)  # per wall-clock second

_LEVELS = 36  # 2**36 seconds: about 2,000 years of trading time, 2,100 of wall-clock time
_HORIZON = 2**_LEVELS
_EQUITY_EPOCH = date(2000, 1, 3)  # a Monday; equities are frozen before it
_CRYPTO_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_EQUITY_REFERENCE = datetime(2025, 1, 2, 21, 0, tzinfo=UTC)  # after the close of 2 January 2025
_CRYPTO_REFERENCE = datetime(2025, 1, 1, tzinfo=UTC)

_EQUITY_SYMBOL = re.compile(r"[A-Z]{1,5}(\.[A-Z])?")
_CRYPTO_SYMBOL = re.compile(r"[A-Z0-9]{2,10}-(USD|USDC|USDT)")
# Well-known-ish levels (early 2025) so the sandbox looks familiar; others get a hashed base.
_CRYPTO_BASES = {"BTC": 95000.0, "ETH": 3300.0, "SOL": 190.0, "XRP": 2.4, "DOGE": 0.32, "LTC": 105.0}
_STANDARD_NORMAL = NormalDist()
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CANDLE_SAMPLES = 4  # prices sampled per bar (plus its last second): open, high, low, close


def is_crypto(symbol: str) -> bool:
    """Crypto products are quoted as BASE-QUOTE ("BTC-USD"); equities never contain a dash."""
    return "-" in symbol


def is_known_symbol(symbol: str) -> bool:
    """Whether the synthetic market lists this symbol (a plausible ticker or crypto product id)."""
    pattern = _CRYPTO_SYMBOL if is_crypto(symbol) else _EQUITY_SYMBOL
    return pattern.fullmatch(symbol) is not None


def _session_bounds(day: date) -> tuple[datetime, datetime]:
    """The regular session of one New York calendar day, in UTC."""
    opens = datetime.combine(day, SESSION_OPEN, tzinfo=NEW_YORK).astimezone(UTC)
    closes = datetime.combine(day, SESSION_CLOSE, tzinfo=NEW_YORK).astimezone(UTC)
    return opens, closes


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")


def us_equity_market_hours(at: datetime) -> MarketHours:
    """Regular US equity session on ``at``'s New York date (weekdays only; holidays ignored)."""
    _require_aware(at)
    day = at.astimezone(NEW_YORK).date()
    if day.weekday() >= 5:
        return MarketHours(is_open=False, opens_at=None, closes_at=None)
    opens, closes = _session_bounds(day)
    return MarketHours(is_open=opens <= at < closes, opens_at=opens, closes_at=closes)


def crypto_market_hours(at: datetime) -> MarketHours:
    """Crypto never closes; the bounds are the UTC day containing ``at``."""
    _require_aware(at)
    start = datetime.combine(at.astimezone(UTC).date(), time(0), tzinfo=UTC)
    return MarketHours(is_open=True, opens_at=start, closes_at=start + timedelta(days=1))


def market_hours(symbol: str, at: datetime) -> MarketHours:
    """The paper market's hours for ``symbol`` at ``at``."""
    return crypto_market_hours(at) if is_crypto(symbol) else us_equity_market_hours(at)


def day_order_expiry(symbol: str, at: datetime) -> datetime:
    """When a DAY order entered at ``at`` expires: the next equity close, or the end of the UTC day."""
    _require_aware(at)
    if is_crypto(symbol):
        return datetime.combine(at.astimezone(UTC).date() + timedelta(days=1), time(0), tzinfo=UTC)
    day = at.astimezone(NEW_YORK).date()
    while True:  # at most three weekend/after-close days are skipped
        if day.weekday() < 5:
            closes = _session_bounds(day)[1]
            if at < closes:
                return closes
        day += timedelta(days=1)


def _weekdays_between(start: date, end: date) -> int:
    """Number of Monday-Friday dates in [start, end); 0 when end <= start."""
    days = (end - start).days
    if days <= 0:
        return 0
    weeks, rest = divmod(days, 7)
    return weeks * 5 + sum(1 for offset in range(rest) if (start.weekday() + offset) % 7 < 5)


def trading_seconds(symbol: str, at: datetime) -> int:
    """The symbol's clock: whole trading seconds (equities) or wall seconds (crypto) since the epoch."""
    _require_aware(at)
    if is_crypto(symbol):
        elapsed = math.floor((at - _CRYPTO_EPOCH).total_seconds())
    else:
        day = at.astimezone(NEW_YORK).date()
        elapsed = _weekdays_between(_EQUITY_EPOCH, day) * SESSION_SECONDS
        if day.weekday() < 5 and day >= _EQUITY_EPOCH:
            opens = _session_bounds(day)[0]
            elapsed += min(max(math.floor((at - opens).total_seconds()), 0), SESSION_SECONDS)
    return min(max(elapsed, 0), _HORIZON)


def _uniform(seed: int, symbol: str, label: str) -> float:
    """A uniform number in (0, 1) that depends only on its arguments."""
    digest = hashlib.blake2b(f"{seed}|{symbol}|{label}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


def brownian(seed: int, symbol: str, t: int) -> float:
    """W(t) of the symbol's standard Brownian path at integer time ``t`` in [0, 2**36]."""
    if not 0 <= t <= _HORIZON:
        raise ValueError(f"time {t} is outside the grid")
    low, high = 0, _HORIZON
    w_low, w_high = 0.0, math.sqrt(_HORIZON) * _STANDARD_NORMAL.inv_cdf(_uniform(seed, symbol, str(_HORIZON)))
    while True:
        if t == low:
            return w_low
        if t == high:
            return w_high
        middle = (low + high) // 2
        noise = _STANDARD_NORMAL.inv_cdf(_uniform(seed, symbol, str(middle)))
        w_middle = (w_low + w_high) / 2 + math.sqrt(high - low) / 2 * noise
        if t < middle:
            high, w_high = middle, w_middle
        else:
            low, w_low = middle, w_middle


def _base_price(seed: int, symbol: str) -> float:
    """The symbol's price level at the reference time."""
    if is_crypto(symbol):
        known = _CRYPTO_BASES.get(symbol.split("-", 1)[0])
        return known if known is not None else 1000.0 ** _uniform(seed, symbol, "base")
    return 20.0 * 25.0 ** _uniform(seed, symbol, "base")  # log-uniform in 20..500


@lru_cache(maxsize=4096)
def _reference_level(seed: int, symbol: str) -> float:
    """W at the reference time: prices are anchored so the symbol trades at its base then."""
    reference = _CRYPTO_REFERENCE if is_crypto(symbol) else _EQUITY_REFERENCE
    return brownian(seed, symbol, trading_seconds(symbol, reference))


def _round_to_tick(value: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    return (value / PRICE_TICK).to_integral_value(rounding=rounding) * PRICE_TICK


class SyntheticPrices:
    """Deterministic quotes for any plausible symbol; implements the paper broker's PriceSource."""

    def __init__(
        self, seed: int = 0, universe: Iterable[str] | None = None, shifts: Mapping[str, Decimal] | None = None
    ):
        self.seed = seed
        self.universe = frozenset(universe) if universe is not None else None
        # Multipliers an operator applied to some symbols ("the market drops 10%"): a paper
        # market shock to rehearse stop-losses. Prices stay a pure function of their inputs.
        self.shifts = dict(shifts or {})

    def lists(self, symbol: str) -> bool:
        """Whether this source quotes ``symbol``."""
        return is_known_symbol(symbol) and (self.universe is None or symbol in self.universe)

    def price(self, symbol: str, at: datetime) -> Decimal:
        """The mid price of ``symbol`` at ``at`` (1-second resolution), on the 0.01 tick, never below it."""
        crypto = is_crypto(symbol)
        sigma = _CRYPTO_SIGMA if crypto else _EQUITY_SIGMA
        walk = brownian(self.seed, symbol, trading_seconds(symbol, at)) - _reference_level(self.seed, symbol)
        raw = _base_price(self.seed, symbol) * math.exp(sigma * walk)
        shifted = Decimal(repr(raw)) * self.shifts.get(symbol, Decimal(1))
        return max(_round_to_tick(shifted), PRICE_TICK)

    def quote(self, symbol: str, at: datetime) -> Quote:
        """Top of book around the synthetic price: about 1 bp wide for equities, 5 bp for crypto."""
        mid = self.price(symbol, at)
        spread_bps = CRYPTO_SPREAD_BPS if is_crypto(symbol) else EQUITY_SPREAD_BPS
        spread_ticks = max(1, int((mid * spread_bps / 10000 / PRICE_TICK).to_integral_value(rounding=ROUND_CEILING)))
        bid = mid - (spread_ticks // 2) * PRICE_TICK
        ask = bid + spread_ticks * PRICE_TICK
        return Quote(symbol=symbol, bid=bid, ask=ask, last=mid, mark=mid, time=at.astimezone(UTC))

    def quotes(self, symbols: list[str], at: datetime) -> dict[str, Quote]:
        """Quotes for the listed symbols; unknown ones are absent."""
        return {symbol: self.quote(symbol, at) for symbol in dict.fromkeys(symbols) if self.lists(symbol)}


def sample_candles(
    price_at: Callable[[datetime], Decimal | None],
    symbol: str,
    interval: CandleInterval,
    start: datetime,
    end: datetime,
) -> list[Candle]:
    """Bars aligned on the interval (from the Unix epoch, UTC) starting in [start, end), each from a
    few sampled prices; bars while the symbol's market is closed all along are left out."""
    bars = []
    for bar_start in _bar_starts(interval, start, end):
        bar_end = bar_start + interval.length
        if not _trades_during(symbol, bar_start, bar_end):
            continue
        step = interval.length / CANDLE_SAMPLES
        moments = [bar_start + step * i for i in range(CANDLE_SAMPLES)] + [bar_end - timedelta(seconds=1)]
        prices = [p for p in (price_at(moment) for moment in moments) if p is not None]
        if prices:
            bars.append(Candle(bar_start, prices[0], max(prices), min(prices), prices[-1]))
    return bars


def _bar_starts(interval: CandleInterval, start: datetime, end: datetime) -> Iterator[datetime]:
    _require_aware(start)
    length = interval.length
    moment = _UNIX_EPOCH + -((_UNIX_EPOCH - start) // length) * length  # the first aligned start >= start
    while moment < end:
        yield moment
        moment += length


def _trades_during(symbol: str, start: datetime, end: datetime) -> bool:
    """Whether the symbol's session overlaps [start, end) (the session of the bar's middle day)."""
    hours = market_hours(symbol, start + (end - start) / 2)
    if hours.opens_at is None or hours.closes_at is None:
        return False
    return hours.opens_at < end and hours.closes_at > start
