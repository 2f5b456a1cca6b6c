"""The orders page: working orders refreshed live, cancel and replace, the filtered history in pages,
the CSV export, and nobody else's orders."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

from flask.testing import FlaskClient

from models import BrokerConnection, Order, User
from tests.support import count_queries, login, make_user, post_form
from tests.trading_support import ask, stored_order, ticket
from utils.enums import OrderPurpose, OrderStatus, OrderType
from utils.extensions import db
from utils.services import connections, execution, orders

D = Decimal


def resting_buy(trader: User, paper: BrokerConnection) -> Order:
    """A BTC buy limit 10% under the market, sent and working at the paper broker."""
    price = ask(paper)
    limit, stop = (price * D("0.9")).quantize(D("0.01")), (price * D("0.8")).quantize(D("0.01"))
    order = orders.place_order(
        trader, ticket(paper, order_type=OrderType.LIMIT, limit_price=limit, stop_loss_price=stop)
    )
    execution.send(order.id)
    db.session.expire_all()
    order = db.session.get_one(Order, order.id)
    assert order.status == OrderStatus.WORKING
    return order


def rows(page: str, table: str) -> list[str]:
    """The order ids of a table's rows, in order."""
    body = page.split(f'<table id="{table}">', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<tr data-order-id="(\d+)"', body)


def book(paper: BrokerConnection, count: int, **fields: object) -> list[Order]:
    """``count`` stored orders (committed), half of them still working."""
    statuses = (OrderStatus.WORKING, OrderStatus.FILLED)
    made = [
        stored_order(paper, "AAPL", OrderPurpose.ENTRY, statuses[n % 2], limit_price=D("100"), **fields)
        for n in range(count)
    ]
    db.session.commit()
    return made


def test_the_working_orders_partial_shows_status_and_fills(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    partly = stored_order(
        paper,
        "ETH-USD",
        OrderPurpose.ENTRY,
        OrderStatus.PARTIALLY_FILLED,
        quantity=D("2"),
        filled_quantity=D("0.5"),
        remaining_quantity=D("1.5"),
        average_fill_price=D("3301.25"),
    )
    done = stored_order(paper, "SOL-USD", OrderPurpose.ENTRY, OrderStatus.FILLED)
    db.session.commit()
    login(client, "trader@example.com")
    index = client.get("/orders/").get_data(as_text=True)
    assert 'hx-get="/orders/working" hx-trigger="every 5s"' in index and 'id="new-order"' in index
    fragment = client.get("/orders/working").get_data(as_text=True)
    assert "<html" not in fragment and rows(fragment, "working-orders") == [str(partly.id)]
    assert str(done.id) not in rows(fragment, "working-orders")
    row = fragment.split(f'data-order-id="{partly.id}"', 1)[1].split("</tr>", 1)[0]
    assert row.startswith(' data-status="partially_filled" data-purpose="entry">')
    for cell, value in (("filled", "0.5"), ("remaining", "1.5"), ("average-price", "3301.25")):
        assert f'<td class="order-{cell}">{value}</td>' in row


def test_cancelling_a_working_order_from_the_page(client: FlaskClient, trader: User, paper: BrokerConnection) -> None:
    order = resting_buy(trader, paper)
    login(client, "trader@example.com")
    response = post_form(client, "/orders/", f"/orders/{order.id}/cancel")
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get_one(Order, order.id).status == OrderStatus.CANCELLED
    page = client.get("/orders/").get_data(as_text=True)
    assert f"Order {order.id}: cancel requested." in page and rows(page, "working-orders") == []


def test_replacing_a_working_order_changes_its_price_at_the_broker(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    order = resting_buy(trader, paper)
    assert order.limit_price is not None
    lower = (order.limit_price * D("0.99")).quantize(D("0.01"))
    login(client, "trader@example.com")
    post_form(client, "/orders/", f"/orders/{order.id}/replace", {"limit_price": str(lower)})
    db.session.expire_all()
    assert db.session.get_one(Order, order.id).status == OrderStatus.REPLACED
    new = db.session.scalars(db.select(Order).where(Order.replaces_order_id == order.id)).one()
    assert new.status == OrderStatus.WORKING and new.limit_price == lower
    page = client.get("/orders/").get_data(as_text=True)
    assert f"Order {order.id} changed: it is now order {new.id} (working)." in page
    assert rows(page, "working-orders") == [str(new.id)]


def test_a_replace_without_new_values_is_refused_in_words(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    order = resting_buy(trader, paper)
    login(client, "trader@example.com")
    post_form(client, "/orders/", f"/orders/{order.id}/replace", {"quantity": "", "limit_price": ""})
    assert "Enter a new quantity or price." in client.get("/orders/").get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get_one(Order, order.id).status == OrderStatus.WORKING


def test_another_users_order_is_not_found(client: FlaskClient, trader: User, paper: BrokerConnection) -> None:
    order = resting_buy(trader, paper)
    make_user("other@example.com")
    login(client, "other@example.com")
    assert post_form(client, "/orders/", f"/orders/{order.id}/cancel").status_code == 404
    replaced = post_form(client, "/orders/", f"/orders/{order.id}/replace", {"limit_price": "1"})
    assert replaced.status_code == 404
    page = client.get("/orders/").get_data(as_text=True)
    assert rows(page, "working-orders") == rows(page, "order-history") == []
    db.session.expire_all()
    assert db.session.get_one(Order, order.id).status == OrderStatus.WORKING


def test_a_cancel_without_csrf_token_is_refused(client: FlaskClient, trader: User, paper: BrokerConnection) -> None:
    order = resting_buy(trader, paper)
    login(client, "trader@example.com")
    assert client.post(f"/orders/{order.id}/cancel").status_code == 400
    db.session.expire_all()
    assert db.session.get_one(Order, order.id).status == OrderStatus.WORKING


def test_the_history_filters_and_pages(client: FlaskClient, trader: User, paper: BrokerConnection) -> None:
    second = connections.create_paper_connection(trader, "Second")
    book(paper, 55)
    msft = stored_order(paper, "MSFT", OrderPurpose.ENTRY, OrderStatus.REJECTED)
    old = stored_order(second, "MSFT", OrderPurpose.ENTRY, OrderStatus.CANCELLED)
    old.created_at = datetime(2024, 3, 5, 15, 0, tzinfo=UTC)
    stored_order(connections.create_paper_connection(make_user("other@example.com")), "MSFT", OrderPurpose.ENTRY,
                 OrderStatus.REJECTED)  # fmt: skip
    db.session.commit()
    login(client, "trader@example.com")
    first_page = client.get("/orders/").get_data(as_text=True)
    assert len(rows(first_page, "order-history")) == 50 and "Page 1 of 2 (57 orders)" in first_page
    assert 'class="field-error"' not in first_page, "no filter is an error when none is given"
    assert rows(first_page, "order-history")[0] == str(old.id), "newest first"
    second_page = client.get("/orders/?page=2").get_data(as_text=True)
    assert len(rows(second_page, "order-history")) == 7 and 'id="page-previous"' in second_page
    symbol = client.get("/orders/?symbol=msft").get_data(as_text=True)
    assert rows(symbol, "order-history") == [str(old.id), str(msft.id)]
    status = client.get("/orders/?status=rejected").get_data(as_text=True)
    assert rows(status, "order-history") == [str(msft.id)]
    by_connection = client.get(f"/orders/?connection={second.id}").get_data(as_text=True)
    assert rows(by_connection, "order-history") == [str(old.id)]
    dated = client.get("/orders/?since=2024-03-05&until=2024-03-05").get_data(as_text=True)
    assert rows(dated, "order-history") == [str(old.id)]
    filtered_pages = client.get("/orders/?status=filled&page=1").get_data(as_text=True)
    assert len(rows(filtered_pages, "order-history")) == 27 and 'id="page-next"' not in filtered_pages


def test_a_bad_filter_is_shown_and_ignored(client: FlaskClient, trader: User, paper: BrokerConnection) -> None:
    book(paper, 3)
    login(client, "trader@example.com")
    page = client.get("/orders/?since=yesterday&status=nonsense").get_data(as_text=True)
    assert "Not a valid date value." in page and len(rows(page, "order-history")) == 3


def test_the_csv_export_has_the_filtered_history_and_no_formulas(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    sneaky = connections.create_paper_connection(trader, '=HYPERLINK("http://evil")')
    book(paper, 2)
    rejected = stored_order(sneaky, "MSFT", OrderPurpose.ENTRY, OrderStatus.REJECTED, status_detail="@SUM(1+1)")
    db.session.commit()
    stored_order(connections.create_paper_connection(make_user("other@example.com")), "MSFT", OrderPurpose.ENTRY,
                 OrderStatus.REJECTED)  # fmt: skip
    db.session.commit()
    login(client, "trader@example.com")
    page = client.get("/orders/?symbol=MSFT").get_data(as_text=True)
    assert 'id="export-csv" class="button" href="/orders/history.csv?symbol=MSFT"' in page
    response = client.get("/orders/history.csv?symbol=MSFT")
    assert response.mimetype == "text/csv" and "attachment" in response.headers["Content-Disposition"]
    header, *lines = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert len(lines) == 1, "only the trader's MSFT order"
    row = dict(zip(header, lines[0], strict=True))
    assert row["connection"] == '\'=HYPERLINK("http://evil")' and row["status_detail"] == "'@SUM(1+1)"
    assert (row["symbol"], row["status"], row["quantity"], row["client_order_id"]) == (
        "MSFT", "rejected", "1", rejected.client_order_id,
    )  # fmt: skip
    everything = list(csv.reader(io.StringIO(client.get("/orders/history.csv").get_data(as_text=True))))
    assert len(everything) == 1 + 3


def test_the_orders_page_takes_the_same_number_of_queries_for_10_or_100_orders(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    login(client, "trader@example.com")
    book(paper, 10)
    pages = ("/orders/", "/orders/working", "/orders/history.csv")
    few = [count_queries(partial(client.get, path)) for path in pages]
    book(paper, 90)
    many = [count_queries(partial(client.get, path)) for path in pages]
    assert few == many
    assert len(rows(client.get("/orders/working").get_data(as_text=True), "working-orders")) == 50
