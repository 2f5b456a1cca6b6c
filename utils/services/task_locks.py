"""One pass at a time per key (a connection's tracking, a monitor chunk), so a slow broker ties up
one worker process at most instead of piling a new pass onto every free one each interval.

Redis locks (every process sees them) when REDIS_URL is set; locks of this process otherwise (the
embedded default runs one worker process). A lock expires after ``ttl`` seconds, the task's hard time
limit, so a worker killed mid-pass holds nothing for longer. While Redis is down the pass runs: Celery
needs Redis too, so no second pass could be running meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from flask import current_app

from utils.extensions import redis_client
from utils.observability import get_logger

log = get_logger(__name__)
_held: dict[str, float] = {}
_held_lock = threading.Lock()


@contextmanager
def one_at_a_time(key: str, ttl: int) -> Iterator[bool]:
    """Yield True while this caller holds ``key`` (released on exit), False when another pass holds it."""
    url = current_app.config.get("REDIS_URL") or ""
    if not url:
        with _local(key, ttl) as mine:
            yield mine
        return
    lock = redis_client(url).lock(f"arbion:pass:{key}", timeout=ttl, blocking=False)
    try:
        mine = bool(lock.acquire())
    except redis.RedisError as exc:
        log.warning("task_locks.unreachable", key=key, error=type(exc).__name__)
        yield True
        return
    try:
        yield mine
    finally:
        if mine:
            _release(lock, key)


@contextmanager
def _local(key: str, ttl: int) -> Iterator[bool]:
    now = time.monotonic()
    with _held_lock:
        mine = _held.get(key, 0.0) <= now
        if mine:
            _held[key] = now + ttl
    try:
        yield mine
    finally:
        if mine:
            with _held_lock:
                _held.pop(key, None)


def _release(lock: redis.lock.Lock, key: str) -> None:
    try:
        lock.release()
    except redis.exceptions.LockError:
        log.warning("task_locks.expired_before_release", key=key)  # it outlived its ttl: the next pass ran
    except redis.RedisError as exc:
        log.warning("task_locks.unreachable", key=key, error=type(exc).__name__)
