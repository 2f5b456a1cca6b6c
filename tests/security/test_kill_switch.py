"""SEC-15: the kill switch stops work already accepted, not only new requests.

Entries accepted over the API (202) while no worker was free wait in the real queue (Redis); the
operator runs ``flask trading halt``; then a real Celery worker drains the queue. None of the
entries reaches the broker, each is cancelled with the halt's reason, and an exit queued the same
way is still sent. tests/services/test_kill_switch.py covers each restricted state at the claim.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from models import BrokerConnection, Order, PaperOrder, User
from tests.reliability.worker import queue_drained, thread_worker
from tests.support import TEST_REDIS_URL
from tests.venues import eventually
from tests.web.api.conftest import bearer, order_body
from utils.enums import OrderPurpose, OrderStatus
from utils.extensions import db
from utils.services import execution, positions
from utils.tasks.trading import enqueue_submit

ENTRIES = 3

pytestmark = [
    pytest.mark.skipif(not TEST_REDIS_URL, reason="the worker takes its tasks from Redis"),
    pytest.mark.timeout(120),
]


def test_entries_queued_before_a_halt_are_never_sent_and_exits_still_are(
    app: Flask, client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    held = client.post("/api/v1/orders", json=order_body(paper), headers=bearer(trader)).json
    execution.send(held["id"])  # a position, filled and protected, from before the incident
    enqueue_submit(positions.close_position(trader, held["trade_id"]).id)
    headers = bearer(trader)
    accepted = [client.post("/api/v1/orders", json=order_body(paper), headers=headers) for _ in range(ENTRIES)]
    assert [answer.status_code for answer in accepted] == [202] * ENTRIES

    halt = app.test_cli_runner().invoke(args=["trading", "halt", "--reason", "incident 42"])
    assert halt.exit_code == 0, halt.output
    with thread_worker(app):
        eventually(queue_drained, "the queue to drain", timeout=60)

    db.session.expire_all()
    queued = [db.session.get_one(Order, answer.json["id"]) for answer in accepted]
    assert {order.status for order in queued} == {OrderStatus.CANCELLED}
    assert {order.status_detail for order in queued} == {"Cancelled before it was sent: trading halted (incident 42)"}
    sent = set(db.session.scalars(db.select(PaperOrder.client_order_id)))
    assert not sent & {order.client_order_id for order in queued}, "no queued entry reached the broker"
    exit_order = db.session.scalar(db.select(Order).where(Order.purpose == OrderPurpose.EXIT))
    assert exit_order is not None and exit_order.client_order_id in sent, "the exit was sent during the halt"
