"""Small text values shared for a few seconds: in Redis when REDIS_URL is set (every process sees
them), in this process otherwise. Callers encode and decode; a ttl of 0 or less stores nothing."""

from __future__ import annotations

import threading
import time

from flask import current_app

from utils.extensions import redis_client

_memory: dict[str, tuple[float, str]] = {}
_memory_lock = threading.Lock()


def read(key: str) -> str | None:
    """The value stored under ``key`` if it has not expired."""
    url = current_app.config.get("REDIS_URL") or ""
    if url:
        raw = redis_client(url).get(key)
        return raw.decode() if isinstance(raw, bytes) else raw
    with _memory_lock:
        entry = _memory.get(key)
    return entry[1] if entry is not None and entry[0] > time.monotonic() else None


def write(key: str, value: str, ttl: int) -> None:
    """Keep ``value`` under ``key`` for ``ttl`` seconds."""
    if ttl <= 0:
        return
    url = current_app.config.get("REDIS_URL") or ""
    if url:
        redis_client(url).set(key, value, ex=ttl)
        return
    with _memory_lock:
        _memory[key] = (time.monotonic() + ttl, value)
