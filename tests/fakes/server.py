"""Serve a fake broker (a small Flask app) on 127.0.0.1 in a thread, with faults on demand.

Faults are queued per route ("POST /trader/v1/accounts/<account_hash>/orders") and consumed by
the next matching request:

- UNAUTHORIZED, RATE_LIMITED (with Retry-After), SERVER_ERROR, UNAVAILABLE: answered before the
  route runs, so nothing happens at the fake broker;
- READ_TIMEOUT: the route runs (the order exists), then the answer is held past the client's
  read timeout;
- DROP_AFTER_ACCEPT: the route runs, then the connection is closed without an answer;
- CONNECTION_RESET: the connection is closed BEFORE the route runs: the broker never saw it;
- STALL: held BEFORE the route runs, then answered 503: the broker never saw the request;
- READ_TIMEOUT and STALL hold until ``seconds`` pass or the ``release`` event (a param) is set, and
  set the ``arrived`` event (a param) when the hold begins, so a test can act at that exact moment;
- ECHO_CREDENTIALS: a careless refusal (``status``, default 401) repeating the caller's Authorization
  header, query and body in its message;
- anything else (NO_LOCATION, REJECT, PARTIAL_FILL ...) is left to the route via ``current_fault()``.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.serving import BaseWSGIServer, make_server


class Fault(StrEnum):
    """Misbehaviours a fake can be told to show on its next matching request."""

    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    UNAVAILABLE = "unavailable"
    READ_TIMEOUT = "read_timeout"
    DROP_AFTER_ACCEPT = "drop_after_accept"
    NO_LOCATION = "no_location"
    REJECT = "reject"
    PARTIAL_FILL = "partial_fill"
    STALL = "stall"
    CONNECTION_RESET = "connection_reset"
    ECHO_CREDENTIALS = "echo_credentials"


@dataclass(frozen=True)
class InjectedFault:
    """One queued fault and its parameters (e.g. retry_after, seconds, reason)."""

    kind: Fault
    params: dict[str, Any] = field(default_factory=dict)


class FaultPlan:
    """Thread-safe queues of faults per route key "METHOD /rule"."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[InjectedFault]] = defaultdict(deque)
        self._storms: dict[str, tuple[float, tuple[InjectedFault, ...], random.Random]] = {}
        self.storm_drawn: Counter[Fault] = Counter()  # what the storms injected, per kind

    def add(self, route: str, kind: Fault, times: int = 1, **params: Any) -> None:
        """Queue ``kind`` for the next ``times`` requests to ``route``."""
        with self._lock:
            self._queues[route].extend(InjectedFault(kind, params) for _ in range(times))

    def storm(self, route: str, chance: float, faults: Sequence[InjectedFault], rng: random.Random) -> None:
        """Once its queue is empty, each request to ``route`` gets one of ``faults`` (picked by
        ``rng``) with probability ``chance``."""
        with self._lock:
            self._storms[route] = (chance, tuple(faults), rng)

    def take(self, route: str) -> InjectedFault | None:
        """The next fault queued for ``route``, else a storm's draw, if any."""
        with self._lock:
            queue = self._queues.get(route)
            if queue:
                return queue.popleft()
            if route in self._storms:
                chance, faults, rng = self._storms[route]
                fault = rng.choice(faults) if rng.random() < chance else None
                if fault is not None:
                    self.storm_drawn[fault.kind] += 1
                return fault
            return None

    def clear(self) -> None:
        """Forget every queued fault and storm."""
        with self._lock:
            self._queues.clear()
            self._storms.clear()


def current_fault() -> InjectedFault | None:
    """The fault taken for the request being served (routes read route-specific kinds)."""
    fault: InjectedFault | None = g.get("fault")
    return fault


def install_faults(app: Flask, plan: FaultPlan) -> None:
    """Apply the generic faults around every route of a fake."""

    @app.before_request
    def _before() -> Any:
        rule = request.url_rule.rule if request.url_rule is not None else request.path
        fault = plan.take(f"{request.method} {rule}")
        g.fault = fault
        if fault is None:
            return None
        if fault.kind == Fault.UNAUTHORIZED:
            return jsonify(error="invalid_token", message="Access token expired"), 401
        if fault.kind == Fault.RATE_LIMITED:
            response = jsonify(error="rate_limited", message="Too many requests")
            response.status_code = 429
            response.headers["Retry-After"] = str(fault.params.get("retry_after", 1))
            return response
        if fault.kind == Fault.ECHO_CREDENTIALS:
            return _echo_credentials(fault)
        if fault.kind == Fault.CONNECTION_RESET:
            _close_connection()
            return Response(status=204)  # never delivered: the socket is already shut
        if fault.kind == Fault.STALL:
            _hold(fault)
        if fault.kind in (Fault.SERVER_ERROR, Fault.UNAVAILABLE, Fault.STALL):
            status = 500 if fault.kind == Fault.SERVER_ERROR else 503
            return jsonify(error="server_error", message="Internal error"), status
        return None

    @app.after_request
    def _after(response: Response) -> Response:
        fault = current_fault()
        if fault is not None and fault.kind == Fault.READ_TIMEOUT:
            _hold(fault)
        if fault is not None and fault.kind == Fault.DROP_AFTER_ACCEPT:
            _close_connection()
        return response


def _echo_credentials(fault: InjectedFault) -> tuple[Response, int]:
    """What the caller sent (credentials included), repeated in an error answer."""
    sent = " ".join(
        (request.headers.get("Authorization", ""), request.query_string.decode(), request.get_data(as_text=True))
    )
    body = jsonify(error=f"invalid_request: {sent}", message=f"Rejected {sent}", errors=[{"detail": sent}])
    return body, int(fault.params.get("status", 401))


def _close_connection() -> None:
    """Shut the socket of the request being served: the client sees the connection drop."""
    connection: socket.socket | None = request.environ.get("werkzeug.socket")
    if connection is not None:
        connection.shutdown(socket.SHUT_RDWR)


def _hold(fault: InjectedFault) -> None:
    """Hold the request being served: signal ``arrived``, then wait for ``release`` or ``seconds``."""
    if (arrived := fault.params.get("arrived")) is not None:
        arrived.set()
    seconds = float(fault.params.get("seconds", 2.0))
    if (release := fault.params.get("release")) is not None:
        release.wait(seconds)
    else:
        time.sleep(seconds)


class FakeServer:
    """A fake's Flask app served on 127.0.0.1 on a free port, in a background thread."""

    def __init__(self, app: Flask):
        self.app = app
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT of the running server."""
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeServer:
        """Start serving; returns self."""
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
