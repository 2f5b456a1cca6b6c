"""A real Celery worker for the reliability batteries: a pool of threads in this process, on the
app's broker (Redis), and how to tell that everything it was given is done."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from celery.contrib.testing.worker import start_worker
from flask import Flask

from tests.support import TEST_REDIS_URL


@contextmanager
def thread_worker(app: Flask, concurrency: int = 4) -> Iterator[None]:
    """Run a worker with ``concurrency`` threads while the block runs; purge what is left after."""
    celery_app = app.extensions["celery"]
    with start_worker(celery_app, pool="threads", concurrency=concurrency, perform_ping_check=False):
        yield
    celery_app.control.purge()  # retries left in the queue must not reach the next test's worker


def queue_drained() -> bool:
    """No message waiting in the queue and none held unacknowledged (running or scheduled) by a worker."""
    queue = redis.Redis.from_url(TEST_REDIS_URL)
    return queue.llen("celery") == 0 and queue.hlen("unacked") == 0
