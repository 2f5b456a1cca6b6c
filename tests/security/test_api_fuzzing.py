"""SEC-08 API fuzzing: schemathesis over every operation of the /api/v1 OpenAPI document.

The app is called in-process (WSGI) with a read+trade token of a trader who owns a paper account,
a filled (protected) trade, a working limit order and an unsent one, and a superadmin's admin
token for the admin operations. Path ids are steered to those rows half of the time so the fuzzer
reaches real objects, not only 404s. Pass: no 5xx, every status documented, every answer matching
its documented schema and content type. Deterministic (derandomized Hypothesis), so CI is stable.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from models import BrokerConnection, Order, User
from tests.scale import scaled
from tests.support import make_user
from tests.trading_support import ask
from tests.web.api.conftest import bearer
from utils.enums import OrderSide, OrderType, Role, TimeInForce
from utils.extensions import db
from utils.services import execution, orders
from utils.services.order_tickets import OrderTicket

SPEC_URL = "/api/v1/openapi.json"
UNLIMITED = "100000 per minute"


@schemathesis.check
def success_status_is_documented_explicitly(ctx: Any, response: Any, case: Any) -> bool:
    """A 2xx/3xx must be listed itself: the spec's ``default`` (the error envelope) covers errors only."""
    if response.status_code < 400:
        documented = set(case.operation.definition.raw["responses"]) - {"default"}
        assert str(response.status_code) in documented, f"undocumented success status {response.status_code}"
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    success_status_is_documented_explicitly,
    response_schema_conformance,
    content_type_conformance,
]


@dataclass(frozen=True)
class Seeded:
    """What the fuzzer calls with: the two tokens and the ids of real rows per path parameter."""

    trader_headers: dict[str, str]
    admin_headers: dict[str, str]
    ids: dict[str, list[int]]

    def headers_for(self, path: str) -> dict[str, str]:
        """The admin token for /admin operations, the trader's read+trade token for the rest."""
        return self.admin_headers if path.startswith("/api/v1/admin/") else self.trader_headers


@pytest.fixture()
def environ(environ: dict[str, str]) -> dict[str, str]:
    """Rate limits out of the way: the fuzzer sends far more calls than a client may."""
    return environ | {"API_RATE_LIMIT": UNLIMITED, "API_ORDER_RATE_LIMIT": UNLIMITED}


@pytest.fixture()
def seeded(paper: BrokerConnection, trader: User) -> Seeded:
    """Real rows for the fuzzer to reach: a filled protected trade, a working and an unsent order."""
    filled = _placed(trader, paper, OrderType.MARKET, send=True)
    working = _placed(trader, paper, OrderType.LIMIT, send=True)
    unsent = _placed(trader, paper, OrderType.LIMIT, send=False)
    root = make_user("root@example.com", Role.SUPERADMIN)
    return Seeded(
        trader_headers=bearer(trader),
        admin_headers=bearer(root, ["read", "admin"]),
        ids={
            "order_id": [filled, working, unsent],
            "trade_id": _trade_ids(filled),
            "user_id": [trader.id, root.id],
            "connection_id": [paper.id],
        },
    )


@pytest.fixture()
def api_schema(app: Flask, seeded: Seeded) -> Any:
    """The app's own OpenAPI document, loaded through the app and calling it in-process."""
    loaded = schemathesis.openapi.from_wsgi(SPEC_URL, _isolated(app))
    for hook in ("map_path_parameters", "map_query", "map_body"):
        loaded.hook(hook)(_towards_seeded_rows(seeded.ids))
    return loaded


def test_every_api_operation_answers_as_documented_to_fuzzed_input(api_schema: Any, seeded: Seeded) -> None:
    """No 5xx, documented statuses and content types, answers matching their schemas, for valid
    and invalid input alike; every failing operation is reported with its smallest example.

    One Hypothesis run per operation rather than ``schema.parametrize()``: schemathesis' lazy
    pytest loader reads ``request.node._nodeid``, which pytest 9 no longer has."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 14, "the whole document is fuzzed"
    failures = {}
    for operation in operations:
        try:
            _fuzz(operation, seeded.headers_for(operation.path))
        except Exception as exc:  # noqa: BLE001 - collected per operation, reported together below
            failures[operation.label] = exc
    assert not failures, "\n\n".join(f"{label}: {exc!r}" for label, exc in failures.items())


def _fuzz(operation: Any, headers: dict[str, str]) -> None:
    """Run the checks over positive and negative examples of one operation."""
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=cases)
    @settings(
        max_examples=scaled(ci=15, soak=100),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()


def test_the_fuzzer_reaches_the_seeded_rows(app: Flask, seeded: Seeded) -> None:
    """The seeded ids are real and readable with the fuzzer's token (so fuzzing gets past 404s)."""
    client = app.test_client()
    for order_id in seeded.ids["order_id"]:
        assert client.get(f"/api/v1/orders/{order_id}", headers=seeded.trader_headers).status_code == 200
    trades = client.get("/api/v1/trades", headers=seeded.trader_headers).json["items"]
    assert {trade["id"] for trade in trades} >= set(seeded.ids["trade_id"])


def _placed(user: User, connection: BrokerConnection, order_type: OrderType, *, send: bool) -> int:
    """Place a small protected BTC buy through the order service; send it when asked."""
    price = ask(connection)
    limit = (price * Decimal("0.97")).quantize(Decimal("0.01")) if order_type == OrderType.LIMIT else None
    ticket = OrderTicket(
        connection_id=connection.id,
        symbol="BTC-USD",
        side=OrderSide.BUY,
        quantity=Decimal("0.01"),
        order_type=order_type,
        time_in_force=TimeInForce.GTC,
        limit_price=limit,
        stop_loss_price=(price * Decimal("0.9")).quantize(Decimal("0.01")),
    )
    order_id = orders.place_order(user, ticket).id
    if send:
        execution.send(order_id)
    return order_id


def _trade_ids(order_id: int) -> list[int]:
    order = db.session.get(Order, order_id)
    assert order is not None and order.trade_id is not None
    return [order.trade_id]


def _towards_seeded_rows(ids: dict[str, list[int]]) -> Callable[..., Any]:
    """A hook that swaps every other generated id (path, query or body) for a seeded one, chosen by
    the generated value so the run stays repeatable."""

    def swap(context: Any, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        return {name: _seeded_or_generated(value, ids.get(name, [])) for name, value in values.items()}

    return swap


def _seeded_or_generated(value: Any, real: Iterable[int]) -> Any:
    choices = list(real)
    if not choices or not isinstance(value, int) or value % 2:
        return value
    return choices[(value // 2) % len(choices)]


def _isolated(app: Flask) -> Callable[..., Any]:
    """The app as WSGI, each request in an empty contextvars context (fresh app context and
    session), as in production, even though the test holds an app context of its own."""

    def call(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return contextvars.Context().run(app, environ, start_response)

    return call


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("get", "/api/v1/orders?symbol=BTC%00", None),
        ("get", "/api/v1/admin/audit?actor=a%00b", None),
        ("post", "/api/v1/orders", {"connection_id": 1, "symbol": "BTC\x00", "side": "buy", "quantity": "1"}),
    ],
)
def test_text_with_a_nul_character_is_refused_with_a_422_naming_the_field(
    app: Flask, seeded: Seeded, method: str, path: str, payload: dict[str, Any] | None
) -> None:
    """Found by the fuzzer: PostgreSQL refuses NUL in text, which used to surface as a 500."""
    response = getattr(app.test_client(), method)(path, json=payload, headers=seeded.headers_for(path))
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.json["error"]["code"] == "invalid_input"
    assert list(response.json["error"]["details"]["fields"]) in (["symbol"], ["actor"])
