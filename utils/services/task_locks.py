"""One pass at a time per key (a connection's tracking, a monitor chunk), so a slow broker ties up
one worker process at most instead of piling a new pass onto every free one each interval.

Redis locks (every process sees them) when REDIS_URL is set; locks of this process otherwise (the
embedded default runs one worker process). A Redis lock is a short lease that a thread of the holder
renews while the pass runs, so a pass may take as long as its time limit allows, yet a worker killed
mid-pass blocks the next one for LEASE_SECONDS at most. While Redis is down the pass runs: Celery
needs Redis too, so no second pass could be running meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from flask import current_app

from utils.extensions import redis_client
from utils.observability import get_logger

log = get_logger(__name__)
LEASE_SECONDS = 15
_held: set[str] = set()
_held_lock = threading.Lock()


@contextmanager
def one_at_a_time(key: str) -> Iterator[bool]:
    """Yield True while this caller holds ``key`` (released on exit), False when another pass holds it."""
    url = current_app.config.get("REDIS_URL") or ""
    if not url:
        with _local(key) as mine:
            yield mine
        return
    lock = redis_client(url).lock(f"arbion:pass:{key}", timeout=LEASE_SECONDS, blocking=False, thread_local=False)
    try:
        mine = bool(lock.acquire())
    except redis.RedisError as exc:
        log.warning("task_locks.unreachable", key=key, error=type(exc).__name__)
        yield True
        return
    if not mine:
        yield False
        return
    done = threading.Event()
    renewer = threading.Thread(target=_renew, args=(lock, done), daemon=True)
    renewer.start()
    try:
        yield True
    finally:
        done.set()
        renewer.join()
        _release(lock, key)


def _renew(lock: redis.lock.Lock, done: threading.Event) -> None:
    """Extend the lease every third of it until the pass is done (or the lease is lost)."""
    while not done.wait(LEASE_SECONDS / 3):
        try:
            lock.reacquire()
        except (redis.exceptions.LockError, redis.RedisError):
            return


@contextmanager
def _local(key: str) -> Iterator[bool]:
    with _held_lock:
        mine = key not in _held
        _held.add(key)
    try:
        yield mine
    finally:
        if mine:
            with _held_lock:
                _held.discard(key)


def _release(lock: redis.lock.Lock, key: str) -> None:
    try:
        lock.release()
    except redis.exceptions.LockError:
        log.warning("task_locks.expired_before_release", key=key)  # it outlived its ttl: the next pass ran
    except redis.RedisError as exc:
        log.warning("task_locks.unreachable", key=key, error=type(exc).__name__)
