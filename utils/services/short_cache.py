"""Small text values shared for a few seconds: in Redis when REDIS_URL is set (every process sees
them), in this process otherwise. Callers encode and decode; a ttl of 0 or less stores nothing.
While Redis is down the cache is empty (reads miss, writes are dropped): callers fetch afresh.

The many-key forms cost one Redis round trip whatever the number of keys (the quote cache reads
and writes a whole batch of symbols at once).
"""

from __future__ import annotations

import threading
import time

import redis
from flask import current_app

from utils.extensions import redis_client
from utils.observability import get_logger

log = get_logger(__name__)

_memory: dict[str, tuple[float, str]] = {}
_memory_lock = threading.Lock()


def read(key: str) -> str | None:
    """The value stored under ``key`` if it has not expired."""
    return read_many([key]).get(key)


def write(key: str, value: str, ttl: int) -> None:
    """Keep ``value`` under ``key`` for ``ttl`` seconds."""
    write_many({key: value}, ttl)


def read_many(keys: list[str]) -> dict[str, str]:
    """The unexpired values of ``keys``, by key; keys without one are left out."""
    client = _redis()
    if client is None:
        now = time.monotonic()
        with _memory_lock:
            entries = {key: _memory.get(key) for key in keys}
        return {key: entry[1] for key, entry in entries.items() if entry is not None and entry[0] > now}
    try:
        values = client.mget(keys) if keys else []
    except redis.RedisError as exc:  # a cache that is down is a cache miss, not a failed request
        log.warning("short_cache.unreachable", error=type(exc).__name__)
        return {}
    return {key: _text(value) for key, value in zip(keys, values, strict=True) if value is not None}


def write_many(values: dict[str, str], ttl: int) -> None:
    """Keep every value under its key for ``ttl`` seconds."""
    if ttl <= 0 or not values:
        return
    client = _redis()
    if client is None:
        expires = time.monotonic() + ttl
        with _memory_lock:
            _memory.update({key: (expires, value) for key, value in values.items()})
        return
    try:
        with client.pipeline(transaction=False) as pipe:
            for key, value in values.items():
                pipe.set(key, value, ex=ttl)
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("short_cache.unreachable", error=type(exc).__name__)


def _redis() -> redis.Redis | None:
    url = current_app.config.get("REDIS_URL") or ""
    return redis_client(url) if url else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
