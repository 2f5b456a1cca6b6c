"""Quotes shared across users and processes for a few seconds (QUOTE_CACHE_SECONDS).

Market data is the same for every user of a provider, so the monitor's chunks, the order
gateway and the dashboard ask the broker once per symbol per few seconds. The cache is
``short_cache``: Redis when REDIS_URL is set (shared by every process), this process otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import current_app

from utils.brokers.base import Quote
from utils.enums import Provider
from utils.services import short_cache

Fetch = Callable[[list[str]], dict[str, Quote]]


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
