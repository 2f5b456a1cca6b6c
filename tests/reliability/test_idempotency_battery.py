"""REL-11 Idempotency: 50 concurrent POSTs to /api/v1/orders carrying the same Idempotency-Key.

Real HTTP against gunicorn (several worker processes, several threads each) on the test database,
then a real Celery worker (a pool of threads) sends whatever the web processes enqueued. Pass
criteria: exactly one order stored, at most one sent to the broker (the paper broker's own order
book), and the same key with a different body answered 409 with nothing new stored or sent.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from models import BrokerConnection, Order, PaperOrder, Trade, User
from tests.processes import BIN, ROOT, free_port, kill_stack, wait_ready
from tests.reliability.worker import queue_drained, thread_worker
from tests.scale import scaled
from tests.support import TEST_REDIS_URL
from tests.venues import eventually
from tests.web.api.conftest import bearer, order_body
from utils.enums import OrderPurpose, OrderSide
from utils.extensions import db

REQUESTS = scaled(ci=50, soak=50)
WEB_WORKERS, WEB_THREADS = "3", "8"
ENTRIES = Order.purpose == OrderPurpose.ENTRY  # once filled, the entry's protective stop is an order too


@pytest.fixture()
def web(app: Flask, environ: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """gunicorn (3 processes x 8 threads) on 127.0.0.1 against the test database; yields its base URL."""
    port, marker = str(free_port()), uuid.uuid4().hex
    child_env = environ | {"PORT": port, "ARBION_TEST_STACK": marker, "HOME": str(tmp_path)}
    child_env["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    command = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", WEB_WORKERS,
               "--threads", WEB_THREADS, "app:create_app()"]  # fmt: skip
    log = (tmp_path / "web.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=child_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(port, path="/health")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=15)
        kill_stack(marker)
        log.close()


def post_at_once(url: str, headers: dict[str, str], bodies: list[dict[str, Any]]) -> list[requests.Response]:
    """POST every body to /api/v1/orders from its own thread, all released at the same moment."""
    start = threading.Barrier(len(bodies))

    def post(body: dict[str, Any]) -> requests.Response:
        start.wait()
        return requests.post(f"{url}/api/v1/orders", json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(post, bodies))


def count(model: Any, *where: Any) -> int:
    db.session.rollback()  # see what the other processes committed
    return int(db.session.scalar(db.select(db.func.count(model.id)).where(*where)) or 0)


def send_everything_enqueued(app: Flask) -> float:
    """Run a real worker (4 threads) until the queue and its unacknowledged messages are empty."""
    started = time.monotonic()
    with thread_worker(app):
        eventually(queue_drained, "the queue to drain", timeout=60)
    return time.monotonic() - started


pytestmark = [
    pytest.mark.skipif(not TEST_REDIS_URL, reason="web processes and the worker share the queue through Redis"),
    pytest.mark.timeout(120),
]


def test_concurrent_posts_with_one_key_store_one_order_and_the_broker_gets_it_once(
    app: Flask, web: str, trader: User, paper: BrokerConnection
) -> None:
    headers = bearer(trader) | {"Idempotency-Key": f"storm-{uuid.uuid4().hex}"}
    body = order_body(paper)
    started = time.monotonic()
    answers = post_at_once(web, headers, [body] * REQUESTS)
    took = time.monotonic() - started

    assert Counter(a.status_code for a in answers) == {202: REQUESTS}, [a.text for a in answers if a.status_code != 202]
    assert len({a.json()["id"] for a in answers}) == 1, "every answer names the same order"
    assert count(Order) == count(Trade) == 1
    drained = send_everything_enqueued(app)
    [order] = db.session.scalars(db.select(Order).where(ENTRIES))
    assert order.broker_order_id is not None, "the one order was sent"
    assert count(PaperOrder, PaperOrder.side == OrderSide.BUY) == 1, "the broker received it once"
    print(f"REL-11: {REQUESTS} POSTs in {took:.2f} s, queue drained in {drained:.2f} s")  # noqa: T201

    other = requests.post(f"{web}/api/v1/orders", json=order_body(paper, quantity="0.02"), headers=headers, timeout=10)
    assert other.status_code == 409 and other.json()["error"]["details"] == {"order_id": order.id}
    send_everything_enqueued(app)
    assert count(Order, ENTRIES) == 1 and count(PaperOrder, PaperOrder.side == OrderSide.BUY) == 1, "nothing new"


def test_concurrent_posts_with_one_key_and_two_bodies_store_one_and_refuse_the_other(
    app: Flask, web: str, trader: User, paper: BrokerConnection
) -> None:
    headers = bearer(trader) | {"Idempotency-Key": f"split-{uuid.uuid4().hex}"}
    one, two = order_body(paper), order_body(paper, quantity="0.02")
    answers = post_at_once(web, headers, [one, two] * (REQUESTS // 2))

    accepted = [a for a in answers if a.status_code == 202]
    refused = [a for a in answers if a.status_code == 409]
    assert len(accepted) + len(refused) == len(answers), Counter(a.status_code for a in answers)
    assert len({a.json()["quantity"] for a in accepted}) == 1, "only one body was accepted"
    assert len({a.json()["id"] for a in accepted}) == 1
    assert len(refused) >= REQUESTS // 2, "every request with the other body is refused"
    assert count(Order) == count(Trade) == 1
    send_everything_enqueued(app)
    assert count(PaperOrder, PaperOrder.side == OrderSide.BUY) == 1
