"""The order listings behind the orders page: working orders, history pages, the ticket's symbols."""

from __future__ import annotations

from models import BrokerConnection, User
from tests.support import make_user
from tests.trading_support import stored_order
from utils.enums import OrderPurpose, OrderStatus
from utils.extensions import db
from utils.services import connections, order_history


def test_working_orders_are_the_users_live_ones_newest_first(trader: User, paper: BrokerConnection) -> None:
    sent = stored_order(paper, "AAPL", OrderPurpose.ENTRY, OrderStatus.SUBMITTED)
    stop = stored_order(paper, "AAPL", OrderPurpose.STOP_LOSS, OrderStatus.WORKING)
    for status in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REPLACED, OrderStatus.REJECTED):
        stored_order(paper, "AAPL", OrderPurpose.ENTRY, status)
    stored_order(connections.create_paper_connection(make_user("other@example.com")), "AAPL", OrderPurpose.ENTRY,
                 OrderStatus.WORKING)  # fmt: skip
    db.session.commit()
    assert [order.id for order in order_history.working_orders(trader)] == [stop.id, sent.id]


def test_a_page_past_the_end_shows_the_last_page(trader: User, paper: BrokerConnection) -> None:
    for _ in range(order_history.PAGE_SIZE + 1):
        stored_order(paper, "AAPL", OrderPurpose.ENTRY, OrderStatus.FILLED)
    db.session.commit()
    page = order_history.history(trader, order_history.OrderFilter(), page=9)
    assert (page.page, page.pages, page.total, len(page.items)) == (2, 2, 51, 1)
    assert page.has_previous and not page.has_next
    empty = order_history.history(trader, order_history.OrderFilter(symbol="NONE"), page=0)
    assert (empty.page, empty.pages, empty.total, empty.items) == (1, 1, 0, [])


def test_the_ticket_suggests_the_users_symbols_first(trader: User, paper: BrokerConnection) -> None:
    stored_order(paper, "ZM", OrderPurpose.ENTRY, OrderStatus.FILLED)
    stored_order(paper, "AAPL", OrderPurpose.ENTRY, OrderStatus.FILLED)
    db.session.commit()
    symbols = order_history.suggested_symbols(trader)
    assert symbols[:2] == ["AAPL", "ZM"] and "BTC-USD" in symbols and symbols.count("AAPL") == 1
