"""REL-12 Token expiry: a Schwab login dies (the fake refuses the refresh grant) while a position is open.

The next monitor cycle finds out: the connection is marked for reconnecting, the user and every admin
are told (the admins with how many open positions hang off it), the position says why the monitor
cannot price it, the stop held at Schwab stays in place, and new entries are refused with the
reason. Logging in again (the OAuth flow against the fake) brings back the same connection with the
same trade and stop, and the monitor protects the position again: it closes it, once, on a breach.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from models import BrokerConnection, Notification, Order, Trade, User
from tests.reliability.outage import api_order_body
from tests.services.test_monitor_crash import (
    assert_closed_exactly_once,
    drive_until_closed,
    monitor_pass,
    open_protected_trade,
)
from tests.support import login, make_user
from tests.venues import Fakes, SchwabVenue, _schwab_login, open_venue, trade_of
from utils.enums import ConnectionStatus, OrderStatus, Role, TradeStatus
from utils.extensions import db
from utils.services import api_tokens, protection


@pytest.fixture()
def environ(environ: dict[str, str], fakes: Fakes) -> dict[str, str]:
    """The test settings pointed at the fakes, with a monitor grace of one second."""
    return environ | fakes.environ() | {"STOP_MONITOR_INTERVAL": "1"}


@pytest.fixture()
def venue(app: Flask, fakes: Fakes, trader: User) -> SchwabVenue:
    """The trader's Schwab account, connected through the OAuth flow; tasks run eagerly, as in a worker."""
    app.extensions["celery"].conf.update(task_always_eager=True, task_eager_propagates=True)
    connected = open_venue("schwab", fakes, trader)
    assert isinstance(connected, SchwabVenue)
    return connected


def notices(user: User, kind: str) -> list[str]:
    """The messages of one kind the user was sent."""
    statement = db.select(Notification.message).where(Notification.user_id == user.id, Notification.kind == kind)
    return list(db.session.scalars(statement))


def expire_the_login(venue: SchwabVenue) -> None:
    """Schwab refuses every refresh token now, and the access token has run out: the next call refreshes."""
    venue.fakes.schwab.kill_refresh_tokens()
    connection = db.session.get_one(BrokerConnection, venue.connection.id)
    connection.access_token_expires_at = connection.created_at
    db.session.commit()


def test_an_expired_schwab_login_alerts_refuses_entries_and_reconnecting_restores_protection(
    client: FlaskClient, venue: SchwabVenue, trader: User
) -> None:
    admin = make_user("admin@example.com", Role.ADMIN)
    trade = open_protected_trade(venue)
    stop = protection.protective_order(trade)
    assert stop is not None
    kept = (trade.id, stop.id, stop.broker_order_id, trade.quantity, trade.stop_loss_price)
    expire_the_login(venue)
    payloads_before = len(venue.fakes.schwab.received_payloads)

    monitor_pass()
    bearer = {"Authorization": "Bearer " + api_tokens.create_token(trader, "bot", ["read", "trade"]).plaintext}
    refused = client.post("/api/v1/orders", headers=bearer, json=api_order_body(venue))
    login(client, trader.email)
    page = client.get("/positions/").get_data(as_text=True)

    assert db.session.get_one(BrokerConnection, venue.connection.id).status == ConnectionStatus.RECONNECT_NEEDED
    assert len(notices(trader, "reconnect_needed")) == 1 and "Connect again" in notices(trader, "reconnect_needed")[0]
    [admin_notice] = notices(admin, "reconnect_needed")
    assert trader.email in admin_notice and "1 open position" in admin_notice
    assert any("reconnect it to restore monitoring" in m for m in notices(trader, "monitor_alert"))
    assert refused.status_code == 409, refused.json
    assert "cannot trade right now (reconnect needed)" in refused.json["error"]["message"]
    assert "The Schwab login has expired" in page
    assert len(venue.fakes.schwab.received_payloads) == payloads_before, "no order was sent with a dead login"
    assert venue.fakes.schwab.orders[stop.broker_order_id]["status"] == "WORKING", "the broker keeps the stop"
    assert trade_of(trade.id).status == TradeStatus.OPEN

    again = _schwab_login(trader)
    trade = trade_of(trade.id)
    stop = protection.protective_order(trade)
    assert stop is not None and stop.status == OrderStatus.WORKING
    assert (again.id, again.status) == (venue.connection.id, ConnectionStatus.CONNECTED), "the same connection"
    assert (trade.id, stop.id, stop.broker_order_id, trade.quantity, trade.stop_loss_price) == kept, "nothing lost"
    assert db.session.scalar(db.select(db.func.count(Order.id))) == len(trade.orders)
    assert db.session.scalar(db.select(db.func.count(Trade.id))) == 1

    monitor_pass()
    assert trade_of(trade.id).protection_detail == "", "priced again: the monitor alert is cleared"
    venue.breach(trade)
    drive_until_closed(venue, trade.id)
    assert_closed_exactly_once(venue, trade.id)
