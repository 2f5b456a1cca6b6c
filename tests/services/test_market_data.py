"""The shared market-data cache: one broker call per symbol per few seconds for quotes and per
exchange day for market hours, across processes via Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from flask import Flask

from utils.brokers.base import MarketHours, Quote
from utils.enums import Provider
from utils.services import market_data


class CountingFeed:
    """A quote source that counts what it was asked for."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    def __call__(self, symbols: list[str]) -> dict[str, Quote]:
        self.asked.append(symbols)
        now = datetime.now(UTC)
        return {s: Quote(s, Decimal("9.99"), Decimal("10.01"), Decimal("10"), Decimal("10.00"), now) for s in symbols}


def test_cached_quotes_are_shared_and_only_missing_symbols_are_fetched(app: Flask) -> None:
    app.config["QUOTE_CACHE_SECONDS"] = 30
    feed = CountingFeed()
    first, fetched = market_data.quotes(Provider.PAPER, ["AAPL", "MSFT"], feed)
    again, refetched = market_data.quotes(Provider.PAPER, ["MSFT", "AAPL", "SPY"], feed)
    assert (fetched, refetched) == (["AAPL", "MSFT"], ["SPY"])
    assert feed.asked == [["AAPL", "MSFT"], ["SPY"]]
    assert again["AAPL"] == first["AAPL"], "a cached quote comes back exactly, Decimals and time included"
    market_data.quotes(Provider.SCHWAB, ["AAPL"], feed)
    assert feed.asked[-1] == ["AAPL"], "providers do not share quotes"


def test_a_zero_lifetime_turns_the_cache_off(app: Flask) -> None:
    app.config["QUOTE_CACHE_SECONDS"] = 0
    feed = CountingFeed()
    market_data.quotes(Provider.COINBASE, ["BTC-USD"], feed)
    market_data.quotes(Provider.COINBASE, ["BTC-USD"], feed)
    assert feed.asked == [["BTC-USD"], ["BTC-USD"]]


class CountingHours:
    """A market-hours source (a 14:30-21:00 UTC session on weekdays) that counts its calls."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, datetime]] = []

    def __call__(self, symbol: str, at: datetime) -> MarketHours:
        self.asked.append((symbol, at))
        if at.weekday() >= 5:
            return MarketHours(is_open=False, opens_at=None, closes_at=None)
        opens_at = at.replace(hour=14, minute=30, second=0, microsecond=0)
        closes_at = opens_at.replace(hour=21, minute=0)
        return MarketHours(is_open=opens_at <= at < closes_at, opens_at=opens_at, closes_at=closes_at)


MONDAY_MORNING = datetime(2031, 3, 3, 15, 0, tzinfo=UTC)  # 10:00 in New York


def test_market_hours_are_fetched_once_per_exchange_day_and_judged_at_each_moment(app: Flask) -> None:
    app.config["MARKET_HOURS_CACHE_SECONDS"] = 300
    hours = CountingHours()
    assert market_data.market_hours(Provider.SCHWAB, "HRS1", MONDAY_MORNING, hours).is_open
    evening = market_data.market_hours(Provider.SCHWAB, "HRS1", MONDAY_MORNING + timedelta(hours=7), hours)
    assert not evening.is_open, "22:00 UTC is after the cached close"
    assert evening.closes_at == MONDAY_MORNING.replace(hour=21, minute=0)
    assert len(hours.asked) == 1, "the same exchange day is served from the cache"
    next_day = market_data.market_hours(Provider.SCHWAB, "HRS1", MONDAY_MORNING + timedelta(days=1), hours)
    assert next_day.is_open and len(hours.asked) == 2, "a new exchange day asks the broker again"
    market_data.market_hours(Provider.PAPER, "HRS1", MONDAY_MORNING, hours)
    assert len(hours.asked) == 3, "providers do not share hours"


def test_a_day_without_a_session_is_cached_closed(app: Flask) -> None:
    app.config["MARKET_HOURS_CACHE_SECONDS"] = 300
    hours = CountingHours()
    saturday = MONDAY_MORNING - timedelta(days=2)
    for later in (0, 3):
        assert not market_data.market_hours(Provider.SCHWAB, "HRS2", saturday + timedelta(hours=later), hours).is_open
    assert len(hours.asked) == 1


def test_a_zero_lifetime_asks_for_market_hours_every_time(app: Flask) -> None:
    app.config["MARKET_HOURS_CACHE_SECONDS"] = 0
    hours = CountingHours()
    for _ in range(2):
        market_data.market_hours(Provider.SCHWAB, "HRS3", MONDAY_MORNING, hours)
    assert len(hours.asked) == 2
