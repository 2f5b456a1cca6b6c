"""Market data shared across users and processes: quotes for a few seconds (QUOTE_CACHE_SECONDS),
a market's hours for the day for longer (MARKET_HOURS_CACHE_SECONDS).

Market data is the same for every user of a provider, so the monitor's chunks, the order
gateway and the dashboard ask the broker once per symbol per few seconds, and an entry asks for
the market's hours once per symbol per day and cache period. The cache is ``short_cache``: Redis
when REDIS_URL is set (shared by every process), this process otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app

from utils.brokers.base import MarketHours, Quote
from utils.enums import Provider
from utils.services import short_cache

Fetch = Callable[[list[str]], dict[str, Quote]]
FetchHours = Callable[[str, datetime], MarketHours]
EXCHANGE_ZONE = ZoneInfo("America/New_York")  # the trading day of every market we trade that closes


def quotes(provider: Provider, symbols: list[str], fetch: Fetch) -> tuple[dict[str, Quote], list[str]]:
    """Quotes for ``symbols``: cached ones, plus one ``fetch`` of the rest. Returns (quotes, fetched)."""
    ttl = current_app.config["QUOTE_CACHE_SECONDS"]
    wanted = sorted(set(symbols))
    found = _cached(provider, wanted) if ttl > 0 else {}
    missing = [symbol for symbol in wanted if symbol not in found]
    if missing:
        fresh = fetch(missing)
        short_cache.write_many({_key(provider, s): _encoded(q) for s, q in fresh.items()}, ttl)
        found |= fresh
    return found, missing


def market_hours(provider: Provider, symbol: str, at: datetime, fetch: FetchHours) -> MarketHours:
    """The symbol's market hours at ``at``: the day's session bounds come from the cache when a
    call on the same exchange day stored them, else from one ``fetch``. Whether the market is open
    is worked out at ``at`` from those bounds (a break inside the session is not kept)."""
    ttl = current_app.config["MARKET_HOURS_CACHE_SECONDS"]
    key = f"arbion:hours:{provider.value}:{symbol}:{at.astimezone(EXCHANGE_ZONE).date().isoformat()}"
    raw = short_cache.read(key) if ttl > 0 else None
    if raw is not None:
        return _hours_at(json.loads(raw), at)
    hours = fetch(symbol, at)
    bounds = {"opens_at": _iso(hours.opens_at), "closes_at": _iso(hours.closes_at)}
    short_cache.write(key, json.dumps(bounds), ttl)
    return hours


def _hours_at(bounds: dict[str, str | None], at: datetime) -> MarketHours:
    opens_at, closes_at = (_moment(bounds[name]) for name in ("opens_at", "closes_at"))
    is_open = opens_at is not None and closes_at is not None and opens_at <= at < closes_at
    return MarketHours(is_open=is_open, opens_at=opens_at, closes_at=closes_at)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _key(provider: Provider, symbol: str) -> str:
    return f"arbion:quote:{provider.value}:{symbol}"


def _cached(provider: Provider, symbols: list[str]) -> dict[str, Quote]:
    keys = {_key(provider, symbol): symbol for symbol in symbols}
    return {keys[key]: _decoded(raw) for key, raw in short_cache.read_many(list(keys)).items()}


def _encoded(quote: Quote) -> str:
    fields: dict[str, Any] = {
        "symbol": quote.symbol,
        "bid": str(quote.bid),
        "ask": str(quote.ask),
        "last": str(quote.last),
        "mark": str(quote.mark),
        "time": quote.time.isoformat(),
    }
    return json.dumps(fields)


def _decoded(raw: str) -> Quote:
    data = json.loads(raw)
    prices = {name: Decimal(data[name]) for name in ("bid", "ask", "last", "mark")}
    return Quote(symbol=data["symbol"], time=datetime.fromisoformat(data["time"]), **prices)
