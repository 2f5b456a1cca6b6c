"""The home page: figures rendered on the server, the live partial, chart JSON on our own origin."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

from flask.testing import FlaskClient

from models import BrokerConnection, User
from tests.support import login, make_user
from tests.trading_support import CRYPTO, add_snapshot, add_trade
from utils.enums import ConnectionStatus, TradeStatus, TradingState
from utils.extensions import db
from utils.money import utcnow
from utils.services import connections, trading_state

JSON = {"Accept": "application/json"}


def page(client: FlaskClient, path: str = "/") -> str:
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def test_the_home_page_renders_figures_and_chart_hooks_without_javascript(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    connections.create_paper_connection(trader, "Second", Decimal("2500.50"))
    login(client, "trader@example.com")
    html = page(client)
    assert re.search(r'<dd id="equity-total">\$1,002,500\.50</dd>', html)
    assert 'id="cash-total">$1,002,500.50' in html and 'id="buying-power-total">$1,002,500.50' in html
    assert 'id="overview"' in html and 'hx-get="/overview"' in html and 'hx-trigger="every 10s"' in html
    assert 'id="equity-chart"' in html and 'id="daily-pnl-chart"' in html
    assert "vendor/chartjs-4.6.1/chart.umd.min.js" in html and "js/charts.js" in html
    assert "<script>" not in html and " onclick=" not in html, "CSP: scripts only from files"
    assert "ACTIVE" in html and "no trades yet" in html


def test_the_live_partial_is_the_overview_alone(client: FlaskClient, trader: User, paper: BrokerConnection) -> None:
    login(client, "trader@example.com")
    html = page(client, "/overview")
    assert 'id="equity-total">$1,000,000.00' in html
    assert "<html" not in html and "equity-chart" not in html


def test_without_connections_the_page_says_what_to_do(client: FlaskClient, trader: User) -> None:
    login(client, "trader@example.com")
    html = page(client)
    assert 'id="overview-empty"' in html and "No broker connections yet" in html
    assert 'id="equity-total"' not in html


def test_an_unavailable_connection_is_marked_and_the_state_and_reason_shown(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    broken = connections.create_paper_connection(trader, "Broken", Decimal(500))
    broken.status, broken.status_detail = ConnectionStatus.ERROR, "Paper ledger offline"
    db.session.commit()
    trading_state.set_user_trading_state(None, trader, TradingState.HALTED, "Daily loss limit reached")
    login(client, "trader@example.com")
    html = page(client)
    assert "Unavailable: Paper ledger offline" in html and 'id="totals-partial"' in html
    assert 'id="equity-total">$1,000,000.00' in html, "the working account still counts"
    assert "HALTED" in html and "Daily loss limit reached" in html


def test_positions_link_to_their_price_chart(client: FlaskClient, trader: User, paper: BrokerConnection) -> None:
    add_trade(trader, paper, status=TradeStatus.OPEN, stop_loss_price=Decimal(90))
    login(client, "trader@example.com")
    link = f'href="/charts/{paper.id}/{CRYPTO}"'
    assert link in page(client) and link in page(client, "/positions/")


def test_equity_and_daily_pnl_json_carry_amounts_as_strings(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    now = utcnow()
    add_snapshot(trader, paper, now - timedelta(hours=2), Decimal("1000000.10"))
    add_snapshot(trader, paper, now - timedelta(hours=1), Decimal("1000000.20"))
    closed = {"status": TradeStatus.CLOSED, "exit_filled_quantity": Decimal(2), "exit_average_price": Decimal(101)}
    add_trade(trader, paper, **closed, realized_pnl=Decimal("0.1"), closed_at=now)
    add_trade(trader, paper, **closed, realized_pnl=Decimal("0.2"), closed_at=now)
    login(client, "trader@example.com")
    equity = client.get("/charts/equity.json").get_json()
    assert [point["equity"] for point in equity["points"]] == ["1000000.1000000000", "1000000.2000000000"]
    daily = client.get("/charts/daily-pnl.json").get_json()
    assert daily["days"] == [{"day": now.date().isoformat(), "realized_pnl": "0.3000000000"}]


def test_the_price_chart_json_has_bars_and_the_trade_levels(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    trade = add_trade(
        trader, paper, status=TradeStatus.OPEN, stop_loss_price=Decimal(90), take_profit_price=Decimal(130)
    )
    login(client, "trader@example.com")
    body = client.get(f"/charts/{paper.id}/btc-usd/candles.json?interval=15m", headers=JSON).get_json()
    assert body["symbol"] == CRYPTO and body["interval"] == "15m" and 0 < len(body["candles"]) <= 200
    assert set(body["candles"][0]) == {"time", "open", "high", "low", "close"}
    assert all(isinstance(body["candles"][0][name], str) for name in ("open", "high", "low", "close"))
    levels = {(level["kind"], Decimal(level["price"])) for level in body["levels"]}
    assert levels == {("entry", Decimal(100)), ("stop", Decimal(90)), ("take_profit", Decimal(130))}
    assert {level["trade_id"] for level in body["levels"]} == {trade.id}
    html = page(client, f"/charts/{paper.id}/{CRYPTO}")
    assert 'id="price-chart"' in html and "lightweight-charts-5.2.1/lightweight-charts.standalone.production.js" in html
    assert 'href="https://www.tradingview.com/"' in html, "the attribution the licence's NOTICE asks for"


def test_another_users_connection_is_not_found(client: FlaskClient, trader: User, paper: BrokerConnection) -> None:
    make_user("other@example.com")
    login(client, "other@example.com")
    for path in (f"/charts/{paper.id}/{CRYPTO}/candles.json", f"/charts/{paper.id}/{CRYPTO}"):
        response = client.get(path, headers=JSON)
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def test_a_bad_interval_or_symbol_is_refused_in_words(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    login(client, "trader@example.com")
    bad = client.get(f"/charts/{paper.id}/{CRYPTO}/candles.json?interval=2h", headers=JSON)
    assert bad.status_code == 422 and "1m, 5m, 15m, 30m, 1d" in bad.get_json()["error"]["message"]
    assert client.get(f"/charts/{paper.id}/BAD%20SYMBOL!/candles.json", headers=JSON).status_code == 422
    assert client.get(f"/charts/{paper.id}/{CRYPTO}?interval=2h").status_code == 422


def test_chart_json_needs_a_login(client: FlaskClient) -> None:
    response = client.get("/charts/equity.json", headers=JSON)
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "authentication_required"
