"""API test helpers: tokens issued through the real service, a logged-in session's CSRF token."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient

from models import BrokerConnection, User
from tests.support import login
from tests.trading_support import CRYPTO, ask
from utils.services import api_tokens


def bearer(user: User, scopes: Iterable[str] = ("read", "trade")) -> dict[str, str]:
    """The Authorization header of a fresh token of ``user``."""
    issued = api_tokens.create_token(user, "test script", scopes)
    return {"Authorization": f"Bearer {issued.plaintext}"}


def order_body(connection: BrokerConnection, **fields: Any) -> dict[str, Any]:
    """A small protected BTC buy as JSON: stop 5% under the ask, decimals as strings."""
    stop = (ask(connection) * Decimal("0.95")).quantize(Decimal("0.01"))
    base = {"connection_id": connection.id, "symbol": CRYPTO, "side": "buy", "quantity": "0.01"}
    return base | {"stop_loss_price": str(stop)} | fields


def session_csrf(client: FlaskClient) -> str:
    """The CSRF token a page hands to its scripts (the csrf-token meta tag of the layout)."""
    html = client.get("/account/tokens/").get_data(as_text=True)
    marker = '<meta name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


@pytest.fixture()
def headers(trader: User) -> dict[str, str]:
    """The trader's read+trade token header."""
    return bearer(trader)


@pytest.fixture()
def session_client(client: FlaskClient, trader: User) -> FlaskClient:
    """A client logged in as the trader through the real form."""
    login(client, trader.email)
    return client
