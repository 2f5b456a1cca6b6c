"""Quotes shared across users and processes for a few seconds (QUOTE_CACHE_SECONDS).

Market data is the same for every user of a provider, so the monitor's chunks, the order
gateway and the dashboard ask the broker once per symbol per few seconds. The cache lives in
Redis when REDIS_URL is set (shared by every process) and in this process otherwise.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import redis
from flask import current_app

from utils.brokers.base import Quote
from utils.enums import Provider
from utils.extensions import redis_client

Fetch = Callable[[list[str]], dict[str, Quote]]
_local: dict[str, tuple[float, Quote]] = {}
_local_lock = threading.Lock()


def quotes(provider: Provider, symbols: list[str], fetch: Fetch) -> tuple[dict[str, Quote], list[str]]:
    """Quotes for ``symbols``: cached ones, plus one ``fetch`` of the rest. Returns (quotes, fetched)."""
    ttl = current_app.config["QUOTE_CACHE_SECONDS"]
    wanted = sorted(set(symbols))
    found = _read(provider, wanted) if ttl > 0 else {}
    missing = [symbol for symbol in wanted if symbol not in found]
    if missing:
        fresh = fetch(missing)
        if ttl > 0:
            _write(provider, fresh, ttl)
        found |= fresh
    return found, missing


def _key(provider: Provider, symbol: str) -> str:
    return f"arbion:quote:{provider.value}:{symbol}"


def _read(provider: Provider, symbols: list[str]) -> dict[str, Quote]:
    client = _redis()
    if client is None:
        now = time.monotonic()
        with _local_lock:
            hits = {s: _local.get(_key(provider, s)) for s in symbols}
        return {s: hit[1] for s, hit in hits.items() if hit is not None and hit[0] > now}
    values = client.mget([_key(provider, s) for s in symbols])
    return {s: _decoded(v) for s, v in zip(symbols, values, strict=True) if v is not None}


def _write(provider: Provider, fresh: dict[str, Quote], ttl: int) -> None:
    client = _redis()
    if client is None:
        expires = time.monotonic() + ttl
        with _local_lock:
            _local.update({_key(provider, s): (expires, q) for s, q in fresh.items()})
        return
    with client.pipeline(transaction=False) as pipe:
        for symbol, quote in fresh.items():
            pipe.set(_key(provider, symbol), _encoded(quote), ex=ttl)
        pipe.execute()


def _redis() -> redis.Redis | None:
    url = current_app.config.get("REDIS_URL") or ""
    return redis_client(url) if url else None


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


def _decoded(raw: bytes | str) -> Quote:
    data = json.loads(raw)
    prices = {name: Decimal(data[name]) for name in ("bid", "ask", "last", "mark")}
    return Quote(symbol=data["symbol"], time=datetime.fromisoformat(data["time"]), **prices)
