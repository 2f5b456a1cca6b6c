"""POST /api/v1/positions/{trade_id}/stop: a stop moved over the API passes the same stop rule, against
the market now, and a refusal is a 422 envelope that changes nothing."""

from __future__ import annotations

from decimal import Decimal

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from models import BrokerConnection, Order, Trade, User
from tests.support import make_user
from tests.trading_support import CRYPTO, ask
from tests.web.api.conftest import bearer, order_body
from utils.enums import OrderStatus, ProtectionMode
from utils.extensions import db
from utils.services import execution, paper_market, protection

CENT = Decimal("0.01")


def filled_trade(client: FlaskClient, paper: BrokerConnection, headers: dict) -> Trade:
    placed = client.post("/api/v1/orders", json=order_body(paper), headers=headers).json
    execution.send(placed["id"])
    return db.session.get_one(Trade, placed["trade_id"])


def move(client: FlaskClient, trade: Trade, stop: object, headers: dict) -> TestResponse:
    return client.post(f"/api/v1/positions/{trade.id}/stop", json={"stop_price": stop}, headers=headers)


def assert_refused(client: FlaskClient, trade: Trade, stop: object, headers: dict, words: str) -> None:
    """A 422 envelope naming ``words``; the stored stop and the broker's stop are untouched."""
    before, resting = trade.stop_loss_price, protection.protective_order(trade)
    response = move(client, trade, stop, headers)
    assert response.status_code == 422, response.get_data(as_text=True)
    error = response.json["error"]
    assert words in error["message"] + str(error.get("details")), error
    db.session.expire_all()
    stored = db.session.get_one(Trade, trade.id)
    assert stored.stop_loss_price == before and protection.protective_order(stored) == resting


def test_a_penny_or_overly_precise_stop_is_a_422_that_changes_nothing(
    client: FlaskClient, paper: BrokerConnection, headers: dict
) -> None:
    trade = filled_trade(client, paper, headers)
    assert trade.stop_loss_price is not None
    assert_refused(client, trade, "0.01", headers, "away from the bid")
    assert_refused(client, trade, str(trade.stop_loss_price + Decimal("0.000000000000001")), headers, "steps of 0.01")
    assert_refused(client, trade, str((ask(paper) * 2).quantize(CENT)), headers, "is not below the bid")
    assert_refused(client, trade, 95000.5, headers, "Send a decimal number as a string")


def test_a_stop_moved_over_the_api_is_held_by_the_broker_even_above_the_entry(
    client: FlaskClient, paper: BrokerConnection, headers: dict
) -> None:
    trade = filled_trade(client, paper, headers)
    assert trade.average_fill_price is not None
    paper_market.shift_price(CRYPTO, "1")
    locked = (trade.average_fill_price + 10).quantize(CENT)
    response = move(client, trade, str(locked), headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["stop_loss_price"] == f"{locked.normalize():f}"
    db.session.expire_all()
    stored = db.session.get_one(Trade, trade.id)
    resting = protection.protective_order(stored)
    assert stored.protection_mode == ProtectionMode.NATIVE
    assert resting is not None and resting.stop_price == locked and resting.status == OrderStatus.WORKING


def test_another_users_trade_is_404_and_a_read_token_403(
    client: FlaskClient, trader: User, paper: BrokerConnection, headers: dict
) -> None:
    trade = filled_trade(client, paper, headers)
    stop = str((ask(paper) * Decimal("0.97")).quantize(CENT))
    assert move(client, trade, stop, bearer(make_user("other@example.com"))).status_code == 404
    assert move(client, trade, stop, bearer(trader, ["read"])).status_code == 403
    db.session.expire_all()
    assert db.session.get_one(Trade, trade.id).stop_loss_price == trade.stop_loss_price


def test_the_broker_stop_cannot_be_replaced_around_the_rule(
    client: FlaskClient, paper: BrokerConnection, headers: dict
) -> None:
    """The order replace takes working entries only: a protective stop moves through the stop rule alone."""
    trade = filled_trade(client, paper, headers)
    resting = protection.protective_order(trade)
    assert resting is not None
    response = client.post(f"/api/v1/orders/{resting.id}/replace", json={"stop_price": "0.01"}, headers=headers)
    assert response.status_code == 409 and "Only a working entry" in response.json["error"]["message"]
    db.session.expire_all()
    assert db.session.get_one(Order, resting.id).stop_price == trade.stop_loss_price
