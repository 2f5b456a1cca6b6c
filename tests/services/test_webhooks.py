"""Notification webhooks: signed POSTs over real HTTP, retried on failure, never to private hosts.

The SSRF guard is tested end to end here (redirects, DNS rebinding, the connection pinned to the
checked address, URLs that parsers read differently); its tables are in tests/test_public_http.py.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask, redirect, request

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
    location: str = ""  # with a 3xx status: where the answer points

    @property
    def url(self) -> str:
        return f"{self.server.base_url}/hook"


def started_receiver() -> Receiver:
    """A running Receiver (stop its server when done)."""
    app = Flask("receiver")
    box = Receiver(FakeServer(app))

    @app.route("/hook", methods=["GET", "POST"])
    def hook() -> Any:
        box.received.append({"headers": dict(request.headers), "body": request.get_data()})
        if box.location:
            return redirect(box.location, box.status)
        return "", box.status

    box.server.start()
    return box


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    box = started_receiver()
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
        # read differently by two parsers: the check saw example.com, the client 127.0.0.1
        ("https://127.0.0.1\\@example.com/hook", "backslashes"),
        ("https://127.0.0.1:443\\@example.com/hook", "backslashes"),
        ("https://user:pass@example.com/hook", "user name"),
        ("https://example.com@127.0.0.1/hook", "user name"),
        ("https://example.com/hook#frag", "fragment"),
        ("https://exa mple.com/hook", "spaces"),
        ("https://2130706433/hook", "DNS name"),
        ("https://0x7f.1/hook", "DNS name"),
        ("https://0x7f000001/hook", "DNS name"),
        ("https://0177.0.0.1/hook", "DNS name"),
        ("https://127.1/hook", "DNS name"),
        ("https://example.com./hook", "DNS name"),
        ("https://[::ffff:127.0.0.1]/hook", "IPv6"),
        ("https://[::ffff:7f00:1]/hook", "public address"),
        ("https://[64:ff9b::7f00:1]/hook", "public address"),
        ("https://[fe80::1%25eth0]/hook", "IPv6"),
        ("https://EXAMPLE.com/hook", "plain form"),
        ("https://example.com/a/../hook", "plain form"),
        ("https://example.com:8443/hook", "port must be one of: 443"),
        # malformed (these used to be 500s)
        ("https://example.com:99999/hook", "not valid"),
        ("https://example.com:0/hook", "between 1 and 65535"),
        ("https://[::1/hook", "not valid"),
        ("https://[example.com]/hook", "not valid"),
        (f"https://{'a' * 64}.example.com/hook", "DNS name"),
        (f"https://{'a.' * 130}com/hook", "DNS name"),
        ("https:///hook", "host name"),
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


PUBLIC = "93.184.215.14"  # a global unicast address; never connected to by these tests


class Resolver:
    """A DNS stand-in that gives each answer in turn (the last one again) and counts the calls."""

    def __init__(self, *answers: Sequence[str]):
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls += 1
        return self.answers[min(self.calls, len(self.answers)) - 1]


@dataclass
class Listener:
    """A bare TCP listener on 127.0.0.1 that counts the connections it is offered."""

    sock: socket.socket
    accepted: int = 0
    stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self.stopped.is_set():
            try:
                connection, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            connection.close()


@pytest.fixture()
def listener() -> Iterator[Listener]:
    box = Listener(socket.create_server(("127.0.0.1", 0)))
    thread = threading.Thread(target=box.serve, daemon=True)
    thread.start()
    yield box
    box.stopped.set()
    thread.join(timeout=5)
    box.sock.close()


def notify_and_deliver(trader: User, resolver: Resolver | None = None) -> webhooks.DeliveryReport:
    """One new notification for ``trader``, then one delivery pass."""
    notifications.notify(trader.id, "drift", "something to say")
    db.session.commit()
    return webhooks.deliver_pending(resolver=resolver) if resolver else webhooks.deliver_pending()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed(trader: User, receiver: Receiver, hooked: str, status: int) -> None:
    inside = started_receiver()  # stands for a service inside our network
    try:
        receiver.status, receiver.location = status, inside.url
        assert notify_and_deliver(trader) == webhooks.DeliveryReport(sent=0, failed=1)
        assert len(receiver.received) == 1 and inside.received == [], "the redirect must not be followed"
    finally:
        inside.server.stop()


def test_the_connection_goes_to_the_checked_address_not_a_new_lookup(
    app: Flask, trader: User, receiver: Receiver
) -> None:
    """The name exists only in our resolver: only a connection pinned to its answer can arrive."""
    app.config["WEBHOOK_ALLOW_PRIVATE_ADDRESSES"] = True
    port = receiver.url.split(":")[2].split("/")[0]
    resolver = Resolver(["127.0.0.1"])
    webhooks.set_webhook(trader, f"http://hooks.example.test:{port}/hook", resolver=resolver)
    assert notify_and_deliver(trader, resolver) == webhooks.DeliveryReport(sent=1, failed=0)
    [got] = receiver.received
    assert got["headers"]["Host"] == f"hooks.example.test:{port}"
    assert resolver.calls == 2, "resolved once when set and once per delivery"


def test_a_name_rebound_to_loopback_after_the_check_is_not_reached(
    app: Flask, trader: User, listener: Listener
) -> None:
    app.config["WEBHOOK_ALLOWED_PORTS"] = (443, listener.port)
    resolver = Resolver([PUBLIC], ["127.0.0.1"])
    webhooks.set_webhook(trader, f"https://hooks.example.test:{listener.port}/hook", resolver=resolver)
    assert notify_and_deliver(trader, resolver) == webhooks.DeliveryReport(sent=0, failed=1)
    assert listener.accepted == 0, "a rebound name must never be connected to"


@pytest.mark.parametrize(
    "answers",
    [
        [PUBLIC, "127.0.0.1"],
        ["::ffff:7f00:1"],
        ["64:ff9b::a9fe:a9fe"],  # NAT64 of 169.254.169.254
        ["2002:a00:1::1"],  # 6to4 of 10.0.0.1
        ["::7f00:1"],  # IPv4-compatible 127.0.0.1
        [],
    ],
)
def test_a_name_with_any_non_public_answer_is_refused(trader: User, answers: list[str]) -> None:
    with pytest.raises(InvalidInputError, match=r"public address|does not resolve"):
        webhooks.set_webhook(trader, "https://hooks.example.test/hook", resolver=Resolver(answers))
    db.session.refresh(trader)
    assert trader.webhook_url is None


def test_a_url_saved_before_the_rules_tightened_is_checked_again_at_delivery(
    app: Flask, trader: User, receiver: Receiver, hooked: str
) -> None:
    app.config["WEBHOOK_ALLOW_PRIVATE_ADDRESSES"] = False
    assert notify_and_deliver(trader) == webhooks.DeliveryReport(sent=0, failed=1)
    assert receiver.received == []


def test_an_address_that_refuses_the_connection_is_skipped_for_the_next_checked_one(
    app: Flask, trader: User, receiver: Receiver
) -> None:
    """As a normal client does (a host with AAAA and A records, one of them unreachable)."""
    app.config["WEBHOOK_ALLOW_PRIVATE_ADDRESSES"] = True
    port = receiver.url.split(":")[2].split("/")[0]
    resolver = Resolver(["127.0.0.2", "127.0.0.1"])  # the receiver listens on 127.0.0.1 only
    webhooks.set_webhook(trader, f"http://hooks.example.test:{port}/hook", resolver=resolver)
    assert notify_and_deliver(trader, resolver) == webhooks.DeliveryReport(sent=1, failed=0)
    assert len(receiver.received) == 1
