"""The shared broker HTTP layer: read retries, write outcome classification, error mapping."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from flask import Flask, jsonify

from tests.fakes.server import FakeServer, Fault, FaultPlan, install_faults
from utils.brokers.http import BrokerHttp, HttpPolicy
from utils.exceptions import (
    APIConnectionError,
    AuthenticationError,
    BrokerTemporaryError,
    RateLimitExceededError,
    UnknownOrderOutcomeError,
)

FAST = HttpPolicy(timeout=(1.0, 0.5), read_attempts=3, backoff_seconds=0.01)


class Counter:
    def __init__(self) -> None:
        self.writes = 0
        self.reads = 0


@pytest.fixture()
def fake() -> Iterator[tuple[FakeServer, FaultPlan, Counter]]:
    app = Flask("fake")
    plan, counter = FaultPlan(), Counter()
    install_faults(app, plan)

    @app.get("/thing")
    def read_thing():  # type: ignore[no-untyped-def]
        counter.reads += 1
        return jsonify(ok=True)

    @app.post("/orders")
    def write_order():  # type: ignore[no-untyped-def]
        counter.writes += 1
        return jsonify(order_id=str(counter.writes)), 201

    server = FakeServer(app).start()
    yield server, plan, counter
    server.stop()


def client(server: FakeServer, sleeps: list[float] | None = None) -> BrokerHttp:
    return BrokerHttp("fake", server.base_url, policy=FAST, sleep=(sleeps if sleeps is not None else []).append)


def test_reads_retry_temporary_failures_then_succeed(fake: tuple[FakeServer, FaultPlan, Counter]) -> None:
    server, plan, counter = fake
    plan.add("GET /thing", Fault.UNAVAILABLE)
    plan.add("GET /thing", Fault.RATE_LIMITED, retry_after=7)
    sleeps: list[float] = []
    assert client(server, sleeps).read("GET", "/thing").json() == {"ok": True}
    assert counter.reads == 1
    assert sleeps == [0.01, 7.0], "backoff first, then the broker's Retry-After"


def test_reads_give_up_after_the_attempts_with_a_typed_error(fake: tuple[FakeServer, FaultPlan, Counter]) -> None:
    server, plan, _ = fake
    plan.add("GET /thing", Fault.RATE_LIMITED, times=3, retry_after=2)
    with pytest.raises(RateLimitExceededError) as caught:
        client(server).read("GET", "/thing")
    assert caught.value.details["retry_after"] == 2.0
    plan.add("GET /thing", Fault.READ_TIMEOUT, times=3, seconds=1.0)
    with pytest.raises(APIConnectionError):
        client(server).read("GET", "/thing")


def test_unauthorized_is_an_authentication_error(fake: tuple[FakeServer, FaultPlan, Counter]) -> None:
    server, plan, _ = fake
    plan.add("GET /thing", Fault.UNAUTHORIZED)
    with pytest.raises(AuthenticationError):
        client(server).read("GET", "/thing")


@pytest.mark.parametrize("fault", [Fault.READ_TIMEOUT, Fault.DROP_AFTER_ACCEPT, Fault.SERVER_ERROR])
def test_writes_that_may_have_landed_are_unknown_and_never_resent(
    fake: tuple[FakeServer, FaultPlan, Counter], fault: Fault
) -> None:
    server, plan, counter = fake
    plan.add("POST /orders", fault, seconds=1.0)
    with pytest.raises(UnknownOrderOutcomeError):
        client(server).write("POST", "/orders", json={})
    expected = 0 if fault == Fault.SERVER_ERROR else 1
    assert counter.writes == expected, "sent exactly once; the fake may or may not have accepted it"


def test_rate_limited_write_is_temporary_not_unknown(fake: tuple[FakeServer, FaultPlan, Counter]) -> None:
    server, plan, counter = fake
    plan.add("POST /orders", Fault.RATE_LIMITED, retry_after=3)
    with pytest.raises(RateLimitExceededError):
        client(server).write("POST", "/orders", json={})
    assert counter.writes == 0


def test_a_write_to_a_closed_port_certainly_did_not_land() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    broker = BrokerHttp("fake", f"http://127.0.0.1:{port}", policy=FAST)
    with pytest.raises(APIConnectionError) as caught:
        broker.write("POST", "/orders", json={})
    assert not isinstance(caught.value, UnknownOrderOutcomeError)
    assert isinstance(caught.value, BrokerTemporaryError)


def test_a_refusal_that_repeats_our_credentials_reaches_callers_without_them(
    fake: tuple[FakeServer, FaultPlan, Counter],
) -> None:
    server, plan, _ = fake
    plan.add("POST /orders", Fault.ECHO_CREDENTIALS, status=400)
    refresh, secret = "refresh-Tq7w9Xk2Lm5Nb8", "app-secret-Hj3Kd6Pq"
    answer = client(server).write(
        "POST", "/orders?code=auth-code-Zx81Vb", data={"refresh_token": refresh}, auth=("app-key", secret)
    )
    assert answer.status_code == 400
    message = answer.json()["message"]
    assert "[REDACTED]" in message and "grant" not in message
    for credential in (refresh, secret, "auth-code-Zx81Vb", "YXBwLWtleTphcHAtc2VjcmV0LUhqM0tkNlBx"):
        assert credential not in answer.text
