"""No N+1: every page and API list costs the same number of SQL statements for 6 or 60 trades."""

from __future__ import annotations

from decimal import Decimal
from functools import partial

import pytest
from flask.testing import FlaskClient

from models import BrokerConnection, User
from tests.support import count_queries, login, make_user
from tests.trading_support import add_trade, stored_order
from utils.enums import OrderPurpose, OrderStatus, Role, TradeStatus
from utils.extensions import db
from utils.services import api_tokens

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
PAGES = ("/", "/overview", "/positions/", "/positions/table", "/orders/", "/orders/working", "/notifications/")
API = ("/api/v1/positions", "/api/v1/orders", "/api/v1/trades", "/api/v1/connections")


def hold(user: User, paper: BrokerConnection, count: int) -> None:
    """``count`` open trades (and their filled entries) plus as many closed ones, over three symbols."""
    for n in range(count):
        symbol = SYMBOLS[n % len(SYMBOLS)]
        trade = add_trade(user, paper, symbol=symbol, status=TradeStatus.OPEN, stop_loss_price=Decimal(1))
        stored_order(paper, symbol, OrderPurpose.ENTRY, OrderStatus.FILLED, trade_id=trade.id)
        add_trade(user, paper, symbol=symbol, status=TradeStatus.CLOSED, realized_pnl=Decimal(n))
    db.session.commit()


@pytest.mark.parametrize("path", PAGES)
def test_pages_cost_the_same_for_few_or_many_trades(
    client: FlaskClient, trader: User, paper: BrokerConnection, path: str
) -> None:
    login(client, trader.email)
    hold(trader, paper, 6)
    client.get(path)  # warm the short caches (balances, quotes) the same way for both counts
    few = count_queries(partial(client.get, path))
    hold(trader, paper, 54)
    many = count_queries(partial(client.get, path))
    assert client.get(path).status_code == 200
    assert few == many, f"{path}: {few} statements for 6 trades, {many} for 60"


@pytest.mark.parametrize("path", API)
def test_api_lists_cost_the_same_for_few_or_many_trades(
    client: FlaskClient, trader: User, paper: BrokerConnection, path: str
) -> None:
    headers = {"Authorization": f"Bearer {api_tokens.create_token(trader, 'counts', ['read']).plaintext}"}
    hold(trader, paper, 6)
    client.get(path, headers=headers)  # the token's first use records last_used_at (once a minute)
    few = count_queries(partial(client.get, path, headers=headers))
    hold(trader, paper, 54)
    many = count_queries(partial(client.get, path, headers=headers))
    assert client.get(path, headers=headers).status_code == 200
    assert few == many, f"{path}: {few} statements for 6 trades, {many} for 60"


@pytest.mark.parametrize("path", ["/admin/users/", "/admin/system/", "/admin/system/audit"])
def test_admin_pages_cost_the_same_for_few_or_many_users(client: FlaskClient, path: str) -> None:
    make_user("root@example.com", Role.SUPERADMIN)
    login(client, "root@example.com")
    for n in range(5):
        make_user(f"trader{n}@example.com")
    client.get(path)
    few = count_queries(partial(client.get, path))
    for n in range(5, 50):
        make_user(f"trader{n}@example.com")
    many = count_queries(partial(client.get, path))
    assert few == many, f"{path}: {few} statements for 6 users, {many} for 51"
