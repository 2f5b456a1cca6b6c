"""The shared quote cache: one broker call per symbol per few seconds, across processes via Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from flask import Flask

from utils.brokers.base import Quote
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
