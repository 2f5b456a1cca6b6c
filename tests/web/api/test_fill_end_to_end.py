"""An order placed through the API reaches the broker by itself: a real Celery worker sends it."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from flask import Flask
from flask.testing import FlaskClient

from models import BrokerConnection
from tests.venues import eventually
from tests.web.api.conftest import order_body


@pytest.fixture()
def worker(app: Flask) -> Iterator[None]:
    """A real worker thread on the app's Celery broker (Redis when TEST_REDIS_URL is set)."""
    celery_app = app.extensions["celery"]
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield
    celery_app.control.purge()


def test_an_api_order_is_sent_filled_and_protected_by_the_worker(
    client: FlaskClient, paper: BrokerConnection, headers: dict, worker: None
) -> None:
    placed = client.post("/api/v1/orders", json=order_body(paper), headers=headers)
    assert placed.status_code == 202 and placed.json["status"] == "pending_submit"
    order_id = placed.json["id"]

    def protected() -> dict | None:
        order = client.get(f"/api/v1/orders/{order_id}", headers=headers).json
        return order if order["protection"]["mode"] == "native" else None

    order = eventually(protected, "the worker to send the order and place its stop at the broker")
    assert order["status"] == "filled" and order["filled_quantity"] == "0.01" and order["broker_order_id"]
    assert Decimal(order["average_fill_price"]) > 0
