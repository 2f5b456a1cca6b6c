"""The order ticket: places a paper order, one order per rendered form, rejections in words with the
values kept, and a preview that changes nothing."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from flask.testing import FlaskClient

from models import AuditLog, BrokerConnection, Notification, Order, User
from tests.support import csrf_token, login, make_user
from tests.trading_support import CRYPTO, ask
from utils.enums import OrderStatus
from utils.extensions import db
from utils.services import connections

KEY = re.compile(r'name="idempotency_key" type="hidden" value="([0-9a-f]{32})"')


def rendered_key(client: FlaskClient) -> str:
    """The Idempotency-Key of a freshly rendered ticket."""
    match = KEY.search(client.get("/orders/new").get_data(as_text=True))
    assert match, "the ticket carries a hidden Idempotency-Key"
    return match.group(1)


def protected_buy(paper: BrokerConnection, **fields: str) -> dict[str, str]:
    """A small BTC market buy with a stop 5% under the ask, as the form posts it."""
    stop = (ask(paper) * Decimal("0.95")).quantize(Decimal("0.01"))
    base = {
        "connection_id": str(paper.id),
        "symbol": "btc-usd",
        "side": "buy",
        "quantity": "0.01",
        "order_type": "market",
        "time_in_force": "gtc",
        "stop_loss_price": str(stop),
    }
    return base | fields


def submit(client: FlaskClient, path: str, data: dict[str, str], **headers: str) -> Any:
    """Post the ticket with the token of a rendered ticket (and its key unless given)."""
    token = csrf_token(client, "/orders/new")
    return client.post(path, data={"csrf_token": token, **data}, headers=headers)


def value_of(page: str, name: str) -> str:
    """The value the page's input ``name`` shows."""
    match = re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', page)
    assert match, f"no input {name}"
    return match.group(1)


def stored_orders() -> list[Order]:
    return list(db.session.scalars(db.select(Order)))


def count(model: type) -> int:
    return int(db.session.scalar(db.select(db.func.count()).select_from(model)) or 0)


def test_the_ticket_offers_the_traders_connections_and_symbols(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    login(client, "trader@example.com")
    page = client.get("/orders/new").get_data(as_text=True)
    assert '<form id="order-ticket"' in page and 'id="preview"' in page and 'id="place-order"' in page
    assert f'<option value="{paper.id}">Sandbox</option>' in page
    assert '<datalist id="symbol-options">' in page and '<option value="BTC-USD">' in page
    assert rendered_key(client) != rendered_key(client), "each rendering gets its own key"


def test_the_ticket_places_a_paper_order_and_lands_on_the_orders_page(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    login(client, "trader@example.com")
    key = rendered_key(client)
    response = submit(client, "/orders/new", protected_buy(paper, idempotency_key=key))
    assert response.status_code == 302 and response.headers["Location"].endswith("/orders/")
    (order,) = stored_orders()
    assert (order.symbol, order.quantity, order.idempotency_key) == (CRYPTO, Decimal("0.01"), key)
    assert order.status == OrderStatus.PENDING_SUBMIT and order.trade is not None
    assert order.trade.stop_loss_price is not None
    page = client.get("/orders/").get_data(as_text=True)
    assert f"Order {order.id} placed: buy 0.01 BTC-USD." in page
    assert f'<tr data-order-id="{order.id}" data-status="pending_submit"' in page


def test_a_double_submit_of_one_rendered_form_stores_one_order(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    login(client, "trader@example.com")
    form = protected_buy(paper, idempotency_key=rendered_key(client))
    first, second = submit(client, "/orders/new", form), submit(client, "/orders/new", form)
    assert first.status_code == second.status_code == 302
    assert len(stored_orders()) == 1
    submit(client, "/orders/new", protected_buy(paper, idempotency_key=rendered_key(client)))
    assert len(stored_orders()) == 2, "a newly rendered form is a new order"


def test_a_risk_rejection_is_explained_next_to_the_form_with_the_values_kept(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    login(client, "trader@example.com")
    response = submit(client, "/orders/new", protected_buy(paper, quantity="1", idempotency_key=rendered_key(client)))
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'id="ticket-error"' in page and "The order was refused by your risk limits" in page
    assert "your limit per order is $25,000.00" in page
    assert (value_of(page, "symbol"), value_of(page, "quantity")) == ("btc-usd", "1")
    assert value_of(page, "stop_loss_price") != ""
    assert stored_orders() == []


def test_invalid_input_is_refused_in_words_and_stores_nothing(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    login(client, "trader@example.com")
    garbled = submit(client, "/orders/new", protected_buy(paper, quantity="lots"))
    assert garbled.status_code == 422
    assert "Enter a number such as 10 or 0.5." in garbled.get_data(as_text=True)
    assert value_of(garbled.get_data(as_text=True), "quantity") == "lots", "what the trader typed stays"
    no_limit = submit(client, "/orders/new", protected_buy(paper, order_type="limit"))
    page = no_limit.get_data(as_text=True)
    assert no_limit.status_code == 422
    assert re.search(r'id="limit_price"[^>]*aria-invalid="true"|aria-invalid="true"[^>]*id="limit_price"', page)
    assert "A limit order needs a limit price." in page
    assert value_of(page, "symbol") == "btc-usd" and '<option selected value="limit">Limit</option>' in page
    assert stored_orders() == []


def test_the_ticket_places_trailing_stops_by_percent(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    login(client, "trader@example.com")
    page = client.get("/orders/new").get_data(as_text=True)
    assert '<label for="trail_percent">Trail %</label>' in page
    assert '<label for="trailing_stop_percent">Trailing stop %</label>' in page
    form = protected_buy(paper, order_type="trailing_stop", trail_percent="1.5", trailing_stop_percent="4")
    response = submit(client, "/orders/new", form | {"idempotency_key": rendered_key(client)})
    assert response.status_code == 302, response.get_data(as_text=True)
    (order,) = stored_orders()
    assert (order.trail_offset, order.trail_percent) == (None, Decimal("1.5"))
    assert order.trade is not None and order.trade.trailing_stop_percent == Decimal(4)
    listed = client.get("/orders/").get_data(as_text=True)
    assert '<td class="order-type">trailing-stop by 1.5%</td>' in listed


def test_a_trail_amount_and_percent_together_are_refused_on_the_percent_field(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    login(client, "trader@example.com")
    both = protected_buy(paper, trailing_stop_offset="100", trailing_stop_percent="2")
    page = submit(client, "/orders/new", both).get_data(as_text=True)
    assert re.search(
        r'aria-invalid="true"[^>]*id="trailing_stop_percent"|id="trailing_stop_percent"[^>]*aria-invalid', page
    )
    assert "Give a trailing stop amount or a trailing stop percent, not both." in page
    too_far = submit(client, "/orders/new", protected_buy(paper, order_type="trailing_stop", trail_percent="100"))
    assert too_far.status_code == 422 and "The trail percent must be below 100." in too_far.get_data(as_text=True)
    assert value_of(too_far.get_data(as_text=True), "trail_percent") == "100"
    assert stored_orders() == []


def test_another_users_connection_cannot_be_chosen(client: FlaskClient, trader: User, paper: BrokerConnection) -> None:
    connections.create_paper_connection(make_user("other@example.com"), "Other sandbox")
    login(client, "other@example.com")
    response = submit(client, "/orders/new", protected_buy(paper))
    assert response.status_code == 422 and "Not a valid choice" in response.get_data(as_text=True)
    assert stored_orders() == []


def test_the_htmx_preview_shows_limits_and_exposure_and_changes_nothing(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    login(client, "trader@example.com")
    audit_rows, notes = count(AuditLog), count(Notification)
    passing = submit(client, "/orders/preview", protected_buy(paper), **{"HX-Request": "true"})
    fragment = passing.get_data(as_text=True)
    assert passing.status_code == 200 and "<html" not in fragment
    assert 'data-allowed="true"' in fragment and "This order would pass your risk limits." in fragment
    assert 'data-rule="max_order_notional"' in fragment and 'data-rule="stop_loss"' in fragment
    assert "At most $25,000.00 per order." in fragment, "the preview says which limit applies"
    assert re.search(r"<dt>Order value</dt><dd>\$[\d,]+\.\d{2}</dd>", fragment)
    refused = submit(client, "/orders/preview", protected_buy(paper, quantity="1"), **{"HX-Request": "true"})
    assert 'data-allowed="false"' in refused.get_data(as_text=True)
    assert "your limit per order is $25,000.00" in refused.get_data(as_text=True)
    assert stored_orders() == []
    assert (count(AuditLog), count(Notification)) == (audit_rows, notes), "a preview audits and notifies nothing"


def test_the_preview_works_as_a_plain_form_post(client: FlaskClient, trader: User, paper: BrokerConnection) -> None:
    login(client, "trader@example.com")
    response = submit(client, "/orders/preview", protected_buy(paper))
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<form id="order-ticket"' in page and 'id="preview-outcome" data-allowed="true"' in page
    assert value_of(page, "quantity") == "0.01"
    invalid = submit(client, "/orders/preview", protected_buy(paper, symbol="not a symbol!"))
    assert invalid.status_code == 422 and "Enter a symbol such as AAPL or BTC-USD." in invalid.get_data(as_text=True)
    assert stored_orders() == []


def test_a_post_without_csrf_token_is_refused(client: FlaskClient, trader: User, paper: BrokerConnection) -> None:
    login(client, "trader@example.com")
    response = client.post("/orders/new", data=protected_buy(paper, idempotency_key=rendered_key(client)))
    assert response.status_code == 400
    assert stored_orders() == []
