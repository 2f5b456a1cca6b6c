"""The API's other resources: connections, quotes, positions and closing, trades, limits, admin."""

from __future__ import annotations

from decimal import Decimal

from flask.testing import FlaskClient

from models import AuditLog, BrokerConnection, Order, Trade, User
from tests.support import make_user
from tests.web.api.conftest import bearer, order_body
from utils.enums import OrderPurpose, Role, TradingState
from utils.extensions import db
from utils.services import connections, execution, trading_state

CONNECTION_FIELDS = {
    "id",
    "provider",
    "label",
    "status",
    "status_detail",
    "account_number_last4",
    "last_tested_at",
    "reconciled_at",
    "created_at",
}


def filled_trade(client: FlaskClient, paper: BrokerConnection, headers: dict) -> int:
    placed = client.post("/api/v1/orders", json=order_body(paper), headers=headers).json
    execution.send(placed["id"])
    return int(placed["trade_id"])


def test_connections_never_carry_a_secret(client: FlaskClient, trader: User, paper: BrokerConnection) -> None:
    paper.access_token_encrypted, paper.credentials_encrypted = "gAAAA-secret-token", "gAAAA-secret-key"
    db.session.commit()
    rows = client.get("/api/v1/connections", headers=bearer(trader)).json
    assert set(rows[0]) == CONNECTION_FIELDS
    assert "secret" not in str(rows)


def test_quotes_through_one_of_the_callers_connections(
    client: FlaskClient, paper: BrokerConnection, headers: dict
) -> None:
    response = client.get(f"/api/v1/quotes?symbols=btc-usd,ETH-USD&connection_id={paper.id}", headers=headers)
    assert response.status_code == 200
    assert [quote["symbol"] for quote in response.json] == ["BTC-USD", "ETH-USD"]
    assert all(isinstance(quote[name], str) for quote in response.json for name in ("bid", "ask", "last", "mark"))
    refused = client.get(f"/api/v1/quotes?symbols=not a symbol&connection_id={paper.id}", headers=headers)
    assert refused.status_code == 422 and refused.json["error"]["details"] == {"field": "symbols"}
    other = connections.create_paper_connection(make_user("other@example.com"), "Theirs")
    assert client.get(f"/api/v1/quotes?symbols=AAPL&connection_id={other.id}", headers=headers).status_code == 404


def test_positions_are_marked_at_the_latest_quote(client: FlaskClient, paper: BrokerConnection, headers: dict) -> None:
    trade_id = filled_trade(client, paper, headers)
    [position] = client.get("/api/v1/positions", headers=headers).json
    assert position["symbol"] == "BTC-USD" and position["quantity"] == "0.01"
    assert position["trade_ids"] == [trade_id] and position["protection"] == "native"
    assert Decimal(position["mark_price"]) > 0 and isinstance(position["unrealized_pnl"], str)


def test_closing_a_position_stores_one_exit(client: FlaskClient, paper: BrokerConnection, headers: dict) -> None:
    trade_id = filled_trade(client, paper, headers)
    response = client.post(f"/api/v1/positions/{trade_id}/close", headers=headers)
    assert response.status_code == 202, response.json
    assert response.json["purpose"] == "exit" and response.json["side"] == "sell"
    again = client.post(f"/api/v1/positions/{trade_id}/close", headers=headers)
    assert again.status_code == 409
    exits = db.session.scalars(db.select(Order).where(Order.purpose == OrderPurpose.EXIT)).all()
    assert [exit_order.id for exit_order in exits] == [response.json["id"]]
    intruder = bearer(make_user("other@example.com"))
    assert client.post(f"/api/v1/positions/{trade_id}/close", headers=intruder).status_code == 404


def test_trades_are_listed_in_pages(client: FlaskClient, paper: BrokerConnection, headers: dict) -> None:
    first, second = filled_trade(client, paper, headers), filled_trade(client, paper, headers)
    page = client.get("/api/v1/trades?per_page=1", headers=headers).json
    assert (page["total"], page["pages"]) == (2, 2) and page["items"][0]["id"] == second
    assert page["items"][0]["filled_quantity"] == "0.01"
    assert client.get("/api/v1/trades?per_page=1&page=2", headers=headers).json["items"][0]["id"] == first
    assert client.get("/api/v1/trades?status=closed", headers=headers).json["total"] == 0
    assert db.session.scalar(db.select(db.func.count(Trade.id))) == 2


def test_the_callers_limits_and_trading_state(client: FlaskClient, trader: User, headers: dict) -> None:
    limits = client.get("/api/v1/risk/limits", headers=headers).json
    assert limits["max_order_notional"] == "25000" and limits["require_stop_loss"] is True
    root = make_user("root@example.com", Role.SUPERADMIN)
    trading_state.set_user_trading_state(root, trader, TradingState.REDUCING, "cooling off")
    state = client.get("/api/v1/trading-state", headers=headers).json
    assert state == {
        "user": {"state": "reducing", "reason": "cooling off"},
        "platform": {"state": "active", "reason": ""},
    }


def test_an_admin_sets_a_users_limits_all_or_nothing(client: FlaskClient, trader: User, headers: dict) -> None:
    admin_headers = bearer(make_user("root@example.com", Role.SUPERADMIN), ["admin"])
    url = f"/api/v1/admin/users/{trader.id}/risk-limits"
    changed = client.put(
        url, json={"max_order_notional": "1000", "symbol_allowlist": "msft, aapl"}, headers=admin_headers
    )
    assert changed.status_code == 200, changed.json
    assert changed.json["max_order_notional"] == "1000" and changed.json["symbol_allowlist"] == ["AAPL", "MSFT"]
    refused = client.put(url, json={"max_order_notional": "5", "max_open_positions": 1.5}, headers=admin_headers)
    assert refused.status_code == 422 and "max_open_positions" in refused.json["error"]["details"]["fields"]
    assert client.get("/api/v1/risk/limits", headers=headers).json["max_order_notional"] == "1000"
    assert client.put("/api/v1/admin/users/999999/risk-limits", json={}, headers=admin_headers).status_code == 404
    assert client.put(url, json={"max_order_notional": "1"}, headers=headers).status_code == 403


def test_an_admin_reads_the_audit_trail(client: FlaskClient, trader: User, paper: BrokerConnection) -> None:
    root = make_user("root@example.com", Role.SUPERADMIN)
    client.post("/api/v1/orders", json=order_body(paper), headers=bearer(trader))
    entries = client.get("/api/v1/admin/audit?action=order.&limit=5", headers=bearer(root, ["admin"])).json
    assert [entry["action"] for entry in entries] == ["order.create"]
    assert entries[0]["actor_email"] == trader.email
    assert db.session.scalar(db.select(db.func.count(AuditLog.id))) > 1, "the filter did narrow the trail"
