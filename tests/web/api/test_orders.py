"""Orders through the API: placing (202, idempotent), validation, listing, ownership, cancel, replace."""

from __future__ import annotations

from decimal import Decimal

import pytest
from flask.testing import FlaskClient

from models import BrokerConnection, Order, User
from tests.support import make_user
from tests.trading_support import ask
from tests.web.api.conftest import bearer, order_body
from utils.enums import OrderStatus
from utils.extensions import db
from utils.services import connections, execution


def test_placing_answers_202_with_the_stored_intent(
    client: FlaskClient, paper: BrokerConnection, headers: dict
) -> None:
    body = order_body(paper, take_profit_price=str((ask(paper) * Decimal("1.10")).quantize(Decimal("0.01"))))
    response = client.post("/api/v1/orders", json=body, headers=headers)
    assert response.status_code == 202, response.json
    order = response.json
    assert order["status"] == "pending_submit" and order["broker_order_id"] is None
    assert order["quantity"] == "0.01" and order["remaining_quantity"] == "0.01"
    assert order["filled_quantity"] == "0" and order["average_fill_price"] is None
    assert Decimal(order["protection"]["stop_loss_price"]) == Decimal(body["stop_loss_price"])
    assert Decimal(order["protection"]["take_profit_price"]) == Decimal(body["take_profit_price"])
    assert order["protection"]["mode"] == "none", "protection is placed once the entry fills"
    assert db.session.get_one(Order, order["id"]).status == OrderStatus.PENDING_SUBMIT


def test_the_same_idempotency_key_and_body_return_the_same_order(
    client: FlaskClient, paper: BrokerConnection, headers: dict
) -> None:
    body = order_body(paper)
    keyed = headers | {"Idempotency-Key": "retry-42"}
    first = client.post("/api/v1/orders", json=body, headers=keyed)
    second = client.post("/api/v1/orders", json=body, headers=keyed)
    assert first.status_code == second.status_code == 202
    assert first.json["id"] == second.json["id"]
    assert db.session.scalar(db.select(db.func.count(Order.id))) == 1


def test_the_same_idempotency_key_with_another_body_is_a_conflict(
    client: FlaskClient, paper: BrokerConnection, headers: dict
) -> None:
    keyed = headers | {"Idempotency-Key": "retry-43"}
    first = client.post("/api/v1/orders", json=order_body(paper), headers=keyed)
    response = client.post("/api/v1/orders", json=order_body(paper, quantity="0.02"), headers=keyed)
    assert response.status_code == 409
    assert response.json["error"]["code"] == "conflict"
    assert response.json["error"]["details"] == {"order_id": first.json["id"]}
    assert db.session.scalar(db.select(db.func.count(Order.id))) == 1


def test_bad_fields_get_a_422_naming_each_field(client: FlaskClient, paper: BrokerConnection, headers: dict) -> None:
    body = order_body(paper, side="hold", quantity=0.01, order_type="iceberg", trail_percent="five")
    del body["symbol"]
    response = client.post("/api/v1/orders", json=body, headers=headers)
    assert response.status_code == 422
    error = response.json["error"]
    assert error["code"] == "invalid_input" and error["details"]["location"] == "json"
    assert set(error["details"]["fields"]) == {"symbol", "side", "quantity", "order_type", "trail_percent"}
    assert "string" in error["details"]["fields"]["quantity"][0], "a JSON float is refused: it may have lost digits"
    assert db.session.scalar(db.select(db.func.count(Order.id))) == 0


def test_trailing_stops_by_percent_are_placed_and_answered_as_percent(
    client: FlaskClient, paper: BrokerConnection, headers: dict
) -> None:
    body = order_body(paper, order_type="trailing_stop", trail_percent="1.5", trailing_stop_percent="3")
    response = client.post("/api/v1/orders", json=body, headers=headers | {"Idempotency-Key": "pct-1"})
    assert response.status_code == 202, response.json
    order = response.json
    assert (order["order_type"], order["trail_offset"], order["trail_percent"]) == ("trailing_stop", None, "1.5")
    assert (order["protection"]["trailing_stop_offset"], order["protection"]["trailing_stop_percent"]) == (None, "3")
    assert client.get(f"/api/v1/orders/{order['id']}", headers=headers).json["trail_percent"] == "1.5"
    other = client.post(
        "/api/v1/orders", json=body | {"trailing_stop_percent": "3.5"}, headers=headers | {"Idempotency-Key": "pct-1"}
    )
    assert other.status_code == 409 and other.json["error"]["details"] == {"order_id": order["id"]}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"order_type": "trailing_stop", "trail_amount": "100", "trail_percent": "2"}, "trail_percent"),
        ({"trailing_stop_amount": "100", "trailing_stop_percent": "2"}, "trailing_stop_percent"),
        ({"order_type": "trailing_stop", "trail_percent": "100"}, "trail_percent"),
        ({"trailing_stop_percent": "0"}, "trailing_stop_percent"),
        ({"order_type": "trailing_stop"}, "trail_amount"),
    ],
)
def test_a_bad_trail_is_a_422_naming_the_field_as_sent(
    client: FlaskClient, paper: BrokerConnection, headers: dict, fields: dict[str, str], field: str
) -> None:
    response = client.post("/api/v1/orders", json=order_body(paper, **fields), headers=headers)
    assert response.status_code == 422
    assert response.json["error"]["details"] == {"field": field}
    assert db.session.scalar(db.select(db.func.count(Order.id))) == 0


def test_an_order_the_gateway_refuses_is_a_422_with_the_field(
    client: FlaskClient, paper: BrokerConnection, headers: dict
) -> None:
    response = client.post("/api/v1/orders", json=order_body(paper, order_type="limit"), headers=headers)
    assert response.status_code == 422
    assert response.json["error"]["details"] == {"field": "limit_price"}


def test_another_users_order_and_connection_are_not_found(
    client: FlaskClient, paper: BrokerConnection, headers: dict
) -> None:
    placed = client.post("/api/v1/orders", json=order_body(paper), headers=headers).json
    intruder = bearer(make_user("other@example.com"))
    assert client.get(f"/api/v1/orders/{placed['id']}", headers=intruder).status_code == 404
    assert client.post(f"/api/v1/orders/{placed['id']}/cancel", headers=intruder).status_code == 404
    response = client.post("/api/v1/orders", json=order_body(paper), headers=intruder)
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
    assert client.get("/api/v1/orders", headers=intruder).json["total"] == 0


def test_orders_are_listed_in_pages_with_filters(client: FlaskClient, paper: BrokerConnection, headers: dict) -> None:
    ids = [client.post("/api/v1/orders", json=order_body(paper), headers=headers).json["id"] for _ in range(3)]
    first = client.get("/api/v1/orders?per_page=2", headers=headers).json
    assert (first["total"], first["pages"], first["page"]) == (3, 2, 1)
    assert [order["id"] for order in first["items"]] == [ids[2], ids[1]]
    second = client.get("/api/v1/orders?per_page=2&page=2", headers=headers).json
    assert [order["id"] for order in second["items"]] == [ids[0]]
    assert client.get("/api/v1/orders?status=filled", headers=headers).json["total"] == 0
    assert client.get("/api/v1/orders?symbol=btc-usd&status=pending_submit", headers=headers).json["total"] == 3
    assert client.get(f"/api/v1/orders?connection_id={paper.id + 1}", headers=headers).json["total"] == 0
    too_big = client.get("/api/v1/orders?per_page=101", headers=headers)
    assert too_big.status_code == 422 and "per_page" in too_big.json["error"]["details"]["fields"]


def test_a_filled_order_shows_fills_and_protection_as_strings(
    client: FlaskClient, paper: BrokerConnection, headers: dict
) -> None:
    placed = client.post("/api/v1/orders", json=order_body(paper), headers=headers).json
    execution.send(placed["id"])  # what the submit task does
    order = client.get(f"/api/v1/orders/{placed['id']}", headers=headers).json
    assert order["status"] == "filled" and order["broker_order_id"]
    assert order["filled_quantity"] == "0.01" and order["remaining_quantity"] == "0"
    assert isinstance(order["average_fill_price"], str) and Decimal(order["average_fill_price"]) > 0
    assert order["protection"]["mode"] == "native"


def test_cancelling_an_unsent_order(client: FlaskClient, paper: BrokerConnection, headers: dict) -> None:
    placed = client.post("/api/v1/orders", json=order_body(paper), headers=headers).json
    response = client.post(f"/api/v1/orders/{placed['id']}/cancel", headers=headers)
    assert response.status_code == 200 and response.json["status"] == "cancelled"
    again = client.post(f"/api/v1/orders/{placed['id']}/cancel", headers=headers)
    assert again.status_code == 409 and again.json["error"]["code"] == "conflict"


def test_replacing_a_working_limit_order(client: FlaskClient, trader: User, headers: dict) -> None:
    paper = connections.create_paper_connection(trader, "Limits", Decimal("1000000"))
    low = (ask(paper) * Decimal("0.97")).quantize(Decimal("0.01"))
    body = order_body(paper, order_type="limit", limit_price=str(low), time_in_force="gtc")
    body["stop_loss_price"] = str((low * Decimal("0.95")).quantize(Decimal("0.01")))
    placed = client.post("/api/v1/orders", json=body, headers=headers).json
    execution.send(placed["id"])
    lower = (low * Decimal("0.99")).quantize(Decimal("0.01"))
    response = client.post(f"/api/v1/orders/{placed['id']}/replace", json={"limit_price": str(lower)}, headers=headers)
    assert response.status_code == 200, response.json
    assert response.json["replaces_order_id"] == placed["id"] and Decimal(response.json["limit_price"]) == lower
    assert client.get(f"/api/v1/orders/{placed['id']}", headers=headers).json["status"] == "replaced"
