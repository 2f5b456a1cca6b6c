"""Notification webhooks: signed POSTs over real HTTP, retried on failure, never to private hosts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask, request

from models import Notification, User
from tests.fakes.server import FakeServer
from tests.support import make_user
from utils.exceptions import InvalidInputError
from utils.extensions import db
from utils.services import notifications, webhooks


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1 that records what it got and answers ``status``."""

    server: FakeServer
    received: list[dict[str, Any]] = field(default_factory=list)
    status: int = 204

    @property
    def url(self) -> str:
        return f"{self.server.base_url}/hook"


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    app = Flask("receiver")
    box = Receiver(FakeServer(app))

    @app.post("/hook")
    def hook() -> Any:
        box.received.append({"headers": dict(request.headers), "body": request.get_data()})
        return "", box.status

    box.server.start()
    yield box
    box.server.stop()


@pytest.fixture()
def hooked(app: Flask, trader: User, receiver: Receiver) -> str:
    app.config["WEBHOOK_ALLOW_PRIVATE_ADDRESSES"] = True  # the receiver listens on loopback
    return webhooks.set_webhook(trader, receiver.url)


def test_a_notification_is_posted_once_and_signed(trader: User, receiver: Receiver, hooked: str) -> None:
    notifications.notify(trader.id, "stop_triggered", "AAPL: stop-loss crossed. Closing.", level="warning")
    db.session.commit()
    assert webhooks.deliver_pending() == webhooks.DeliveryReport(sent=1, failed=0)
    assert webhooks.deliver_pending() == webhooks.DeliveryReport(sent=0, failed=0), "sent once"
    [got] = receiver.received
    body = json.loads(got["body"])
    assert (body["kind"], body["level"], body["message"]) == (
        "stop_triggered",
        "warning",
        "AAPL: stop-loss crossed. Closing.",
    )
    expected = webhooks.signature(hooked, got["headers"]["X-Arbion-Timestamp"], got["body"])
    assert got["headers"]["X-Arbion-Signature"] == expected
    assert webhooks.signature("another-secret", got["headers"]["X-Arbion-Timestamp"], got["body"]) != expected
    assert hooked not in (trader.webhook_secret_encrypted or ""), "the secret is stored encrypted"


def test_a_refused_delivery_is_tried_again_then_given_up(trader: User, receiver: Receiver, hooked: str) -> None:
    receiver.status = 500
    notifications.notify(trader.id, "order_rejected", "refused")
    db.session.commit()
    for _ in range(webhooks.MAX_ATTEMPTS + 2):
        webhooks.deliver_pending()
    assert len(receiver.received) == webhooks.MAX_ATTEMPTS
    row = db.session.scalar(db.select(Notification))
    assert row is not None and row.webhook_sent_at is None and row.webhook_attempts == webhooks.MAX_ATTEMPTS


def test_notifications_from_before_the_webhook_and_of_other_users_are_not_sent(
    app: Flask, trader: User, receiver: Receiver
) -> None:
    notifications.notify(trader.id, "drift", "old news")
    db.session.commit()
    app.config["WEBHOOK_ALLOW_PRIVATE_ADDRESSES"] = True
    webhooks.set_webhook(trader, receiver.url)
    other = make_user("other@example.com")
    notifications.notify(other.id, "drift", "not yours")
    db.session.commit()
    assert webhooks.deliver_pending().sent == 0 and receiver.received == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/hook", "http\\(s\\) URL"),
        ("http://example.com/hook", "must use https"),
        ("https://127.0.0.1/hook", "public address"),
        ("https://169.254.169.254/latest/meta-data", "public address"),
        ("https://10.0.0.7/hook", "public address"),
    ],
)
def test_unsafe_urls_are_refused(trader: User, url: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        webhooks.set_webhook(trader, url)
    db.session.refresh(trader)
    assert trader.webhook_url is None


def test_clearing_the_webhook_stops_delivery(trader: User, receiver: Receiver, hooked: str) -> None:
    webhooks.clear_webhook(trader)
    notifications.notify(trader.id, "drift", "after clearing")
    db.session.commit()
    assert webhooks.deliver_pending().sent == 0 and receiver.received == []
