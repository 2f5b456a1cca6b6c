"""The positions page: protection shown honestly, P&L from the latest quote, close and move-stop."""

from __future__ import annotations

import re
from decimal import Decimal

from flask import Flask
from flask.testing import FlaskClient

from models import BrokerConnection, Order, Trade, User
from tests.support import login, make_user, post_form
from tests.trading_support import CRYPTO, ticket
from utils.enums import OrderPurpose, OrderStatus, ProtectionMode
from utils.extensions import db
from utils.services import connections, execution, orders, paper_market, protection, trade_book


def protected_trade(trader: User, paper: BrokerConnection) -> Trade:
    entry = orders.place_order(trader, ticket(paper))
    execution.send(entry.id)
    return db.session.get_one(Trade, entry.trade_id)


def test_positions_show_protection_and_unrealized_pnl(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    trade = protected_trade(trader, paper)
    unprotected = protected_trade(trader, paper)
    unprotected.protection_mode, unprotected.protection_detail = ProtectionMode.NONE, ""
    db.session.commit()
    login(client, "trader@example.com")
    page = client.get("/positions/").get_data(as_text=True)
    assert '<td class="protection-native">native' in page and '<td class="protection-none">UNPROTECTED' in page
    assert f"<td>{trade.stop_loss_price.normalize():f}</td>" in page, "the stop as set, without stored trailing zeros"
    assert len(re.findall(r'<span class="(?:ok|bad)">-?\$[\d,]+\.\d{2}</span>', page)) == 2, "both priced from the feed"


def test_the_live_table_refreshes_only_the_traders_own_rows(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    mine = protected_trade(trader, paper)
    other = make_user("other@example.com")
    theirs = protected_trade(other, connections.create_paper_connection(other, "Theirs"))
    login(client, "trader@example.com")
    page = client.get("/positions/").get_data(as_text=True)
    assert 'id="positions-live" hx-get="/positions/table" hx-trigger="every 5s"' in page
    partial = client.get("/positions/table")
    body = partial.get_data(as_text=True)
    assert partial.status_code == 200 and "<html" not in body
    assert re.findall(r'data-trade-id="(\d+)"', body) == [str(mine.id)], f"not trade {theirs.id}"


def test_a_trailing_stop_by_percent_is_shown_as_a_percent(
    client: FlaskClient, app: Flask, trader: User, paper: BrokerConnection
) -> None:
    app.config["RISK_REQUIRE_STOP_LOSS"] = False
    entry = orders.place_order(trader, ticket(paper, stop_loss_price=None, trailing_stop_percent=Decimal("2.5")))
    execution.send(entry.id)
    login(client, "trader@example.com")
    page = client.get("/positions/").get_data(as_text=True)
    assert "<td>2.5%</td>" in page and "Trailing stop 2.5% behind the best price" in page


def test_closing_from_the_page_stores_one_exit(client: FlaskClient, trader: User, paper: BrokerConnection) -> None:
    trade = protected_trade(trader, paper)
    login(client, "trader@example.com")
    post_form(client, "/positions/", f"/positions/{trade.id}/close")
    exits = db.session.scalars(db.select(Order).where(Order.purpose == OrderPurpose.EXIT)).all()
    assert len(exits) == 1 and exits[0].trade_id == trade.id
    stop = db.session.scalars(db.select(Order).where(Order.purpose == OrderPurpose.STOP_LOSS)).one()
    assert stop.status == OrderStatus.CANCELLED, "the broker stop is cancelled before the exit"
    post_form(client, "/positions/", f"/positions/{trade.id}/close")
    assert "already being closed" in client.get("/positions/").get_data(as_text=True)


def test_moving_the_stop_from_the_page(client: FlaskClient, trader: User, paper: BrokerConnection) -> None:
    trade = protected_trade(trader, paper)
    login(client, "trader@example.com")
    assert trade.average_fill_price is not None
    tighter = (trade.average_fill_price * Decimal("0.97")).quantize(Decimal("0.01"))
    post_form(client, "/positions/", f"/positions/{trade.id}/stop", {"stop_price": str(tighter)})
    db.session.expire_all()
    moved = protection.protective_order(db.session.get_one(Trade, trade.id))
    assert moved is not None and moved.stop_price == tighter
    post_form(client, "/positions/", f"/positions/{trade.id}/stop", {"stop_price": str(tighter * 2)})
    assert "is not below the bid" in client.get("/positions/").get_data(as_text=True)


def test_the_page_refuses_a_penny_or_overly_precise_stop_in_words_and_keeps_the_old_one(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    trade = protected_trade(trader, paper)
    before = trade.stop_loss_price
    assert before is not None
    login(client, "trader@example.com")
    for stop, words in (("0.01", "away from the bid"), (f"{before}000000000001", "prices move in steps of 0.01")):
        post_form(client, "/positions/", f"/positions/{trade.id}/stop", {"stop_price": stop})
        assert words in client.get("/positions/").get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get_one(Trade, trade.id).stop_loss_price == before
    assert protection.protective_order(db.session.get_one(Trade, trade.id)).stop_price == before  # type: ignore[union-attr]


def test_the_page_lets_a_long_lock_in_gains_above_its_entry(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    trade = protected_trade(trader, paper)
    assert trade.average_fill_price is not None
    paper_market.shift_price(CRYPTO, "1")
    locked = (trade.average_fill_price + 10).quantize(Decimal("0.01"))
    login(client, "trader@example.com")
    post_form(client, "/positions/", f"/positions/{trade.id}/stop", {"stop_price": str(locked)})
    assert f"Stop moved to {locked}" in client.get("/positions/").get_data(as_text=True)
    db.session.expire_all()
    moved = protection.protective_order(db.session.get_one(Trade, trade.id))
    assert moved is not None and moved.stop_price == locked


def test_another_users_trade_cannot_be_closed(client: FlaskClient, trader: User, paper: BrokerConnection) -> None:
    trade = protected_trade(trader, paper)
    make_user("other@example.com")
    login(client, "other@example.com")
    assert post_form(client, "/positions/", f"/positions/{trade.id}/close").status_code == 404
    assert trade_book.live_exit(trade) is not None and trade_book.live_exit(trade).purpose == OrderPurpose.STOP_LOSS
