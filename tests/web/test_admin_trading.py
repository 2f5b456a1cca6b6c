"""The kill switch and per-user trading state from the admin panel, shown on every page."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from models import AuditLog, BrokerConnection, Order, User
from tests.support import login, make_user, post_form
from tests.trading_support import ticket
from utils.enums import OrderStatus, Role, TradingState
from utils.exceptions import RiskLimitExceededError
from utils.extensions import db
from utils.services import execution, orders, positions, risk, trading_state


@pytest.fixture()
def superadmin(client: FlaskClient, trader: User) -> User:
    admin = make_user("root@example.com", Role.SUPERADMIN)
    login(client, "root@example.com")
    return admin


def test_halting_needs_confirmation_and_a_reason_then_shows_everywhere(
    client: FlaskClient, superadmin: User, trader: User
) -> None:
    post_form(client, "/admin/trading/", "/admin/trading/", {"state": "halted", "reason": "exchange outage"})
    assert trading_state.global_trading_state().state == TradingState.ACTIVE, "no confirmation, no change"
    post_form(client, "/admin/trading/", "/admin/trading/", {"state": "halted", "confirm": "y"})
    assert trading_state.global_trading_state().state == TradingState.ACTIVE, "no reason, no halt"
    post_form(
        client, "/admin/trading/", "/admin/trading/", {"state": "halted", "reason": "exchange outage", "confirm": "y"}
    )
    assert trading_state.global_trading_state().state == TradingState.HALTED
    page = client.get("/connections/").get_data(as_text=True)
    assert "kill-banner" in page and "Trading is HALTED platform-wide: exchange outage" in page
    assert db.session.scalar(db.select(AuditLog).where(AuditLog.action == "risk.global_trading_state")) is not None
    post_form(client, "/admin/trading/", "/admin/trading/", {"state": "active", "confirm": "y"})
    assert "kill-banner" not in client.get("/").get_data(as_text=True)


def test_a_halted_trader_cannot_enter_but_can_still_exit(
    client: FlaskClient, superadmin: User, trader: User, paper: BrokerConnection
) -> None:
    entry = orders.place_order(trader, ticket(paper))
    execution.send(entry.id)
    form = {"state": "halted", "reason": "margin review", "confirm": "y"}
    post_form(client, f"/admin/users/{trader.id}", f"/admin/trading/users/{trader.id}", form)
    assert trading_state.user_trading_state(trader).state == TradingState.HALTED
    assert "HALTED: margin review" in client.get(f"/admin/users/{trader.id}").get_data(as_text=True)
    with pytest.raises(RiskLimitExceededError):
        orders.place_order(trader, ticket(paper))
    exit_order = positions.close_position(trader, entry.trade_id)
    assert exit_order.trade_id == entry.trade_id, "exits are never blocked by the halt"


def test_traders_cannot_reach_the_kill_switch(client: FlaskClient, trader: User) -> None:
    login(client, "trader@example.com")
    assert client.get("/admin/trading/").status_code == 403
    assert client.post("/admin/trading/", data={"state": "halted"}).status_code in (400, 403)
    assert trading_state.global_trading_state().state == TradingState.ACTIVE


def test_an_admin_sets_a_users_limits_and_a_bad_value_changes_nothing(
    client: FlaskClient, superadmin: User, trader: User, paper: BrokerConnection
) -> None:
    page = f"/admin/users/{trader.id}"
    assert "max order notional" in client.get(page).get_data(as_text=True)
    post_form(client, page, f"/admin/trading/users/{trader.id}/limits", {"max_order_notional": "1"})
    assert "Risk limits of trader@example.com saved" in client.get(page).get_data(as_text=True)
    with pytest.raises(RiskLimitExceededError, match="limit per order"):
        orders.place_order(trader, ticket(paper))
    post_form(
        client, page, f"/admin/trading/users/{trader.id}/limits", {"max_order_notional": "5", "max_open_positions": "x"}
    )
    assert "must be a number" in client.get(page).get_data(as_text=True)
    db.session.expire_all()
    assert risk.limits_for(trader).max_order_notional == 1, "one bad field: nothing saved"


def test_halting_a_user_cancels_their_queued_entries_and_working_ones_on_request(
    client: FlaskClient, superadmin: User, trader: User, paper: BrokerConnection
) -> None:
    queued = orders.place_order(trader, ticket(paper))
    form = {"state": "halted", "reason": "margin review", "confirm": "y", "cancel_working": "y"}
    post_form(client, f"/admin/users/{trader.id}", f"/admin/trading/users/{trader.id}", form)
    page = client.get(f"/admin/users/{trader.id}").get_data(as_text=True)
    assert "1 queued entry order(s) cancelled. Working entry orders are being cancelled at the broker." in page
    db.session.expire_all()
    assert db.session.get_one(Order, queued.id).status == OrderStatus.CANCELLED
