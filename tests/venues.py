"""Three brokers behind one small test interface: the paper broker, the Schwab fake, the Coinbase fake.

End-to-end and crash tests run the same scenario on each. A ``Venue`` connects a trader through the
real services (Schwab: the OAuth login against the fake; Coinbase: a CDP key the fake verifies),
moves its market through a stop, makes the broker execute a resting order, and reads back what the
BROKER recorded (executions, exit orders received), so assertions never trust our own database
alone. ``eventually`` is the bounded poll for effects that happen in a worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import jsonify, request

from models import BrokerConnection, Order, PaperAccount, PaperOrder, Trade, User
from tests.fakes.coinbase import CoinbaseFake, create_coinbase_fake
from tests.fakes.schwab import SchwabFakeState, create_schwab_fake
from tests.fakes.server import FakeServer
from tests.trading_support import CRYPTO, ticket
from utils.enums import OrderSide, OrderType, TradeStatus
from utils.extensions import db
from utils.services import connections, schwab_logins
from utils.services.order_tickets import OrderTicket

T = TypeVar("T")
SCHWAB_KEY, SCHWAB_SECRET = "e2e-app-key", "e2e-app-secret"
SCHWAB_CALLBACK = "https://127.0.0.1/connections/schwab/callback"
COINBASE_KEY_NAME = "organizations/org-e2e/apiKeys/key-e2e"
EQUITY = "AAPL"


@dataclass(frozen=True)
class Execution:
    """One execution as the broker booked it."""

    side: OrderSide
    quantity: Decimal
    price: Decimal
    fee: Decimal = Decimal(0)


@dataclass
class Fakes:
    """Both fake brokers, served on 127.0.0.1 for one test."""

    schwab: SchwabFakeState
    schwab_server: FakeServer
    schwab_account: str
    coinbase: CoinbaseFake
    coinbase_server: FakeServer
    coinbase_private_pem: str

    def environ(self) -> dict[str, str]:
        """The settings that point the app at the fakes."""
        return {
            "SCHWAB_CLIENT_ID": SCHWAB_KEY,
            "SCHWAB_CLIENT_SECRET": SCHWAB_SECRET,
            "SCHWAB_REDIRECT_URI": SCHWAB_CALLBACK,
            "SCHWAB_API_BASE_URL": self.schwab_server.base_url,
            "COINBASE_API_BASE_URL": self.coinbase_server.base_url,
        }


@contextmanager
def running_fakes() -> Iterator[Fakes]:
    """Start the Schwab and Coinbase fakes with a funded account each; stop them afterwards."""
    schwab_app, schwab = create_schwab_fake(SCHWAB_KEY, SCHWAB_SECRET, redirect_uri=SCHWAB_CALLBACK)
    _always_in_session(schwab_app)
    account = schwab.add_account("12345678", cash="100000", buying_power="100000")
    schwab.set_price(EQUITY, "100.00", bid="99.99", ask="100.01")
    private = ec.generate_private_key(ec.SECP256R1())
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    coinbase = create_coinbase_fake(COINBASE_KEY_NAME, public_pem, products={CRYPTO: ("0.00000001", "0.01", "0.00001")})
    coinbase.set_price(CRYPTO, "50000.00", "50010.00")
    coinbase.set_balance("USD", "100000")
    servers = [FakeServer(schwab_app).start(), FakeServer(coinbase.app).start()]
    try:
        yield Fakes(schwab, servers[0], account, coinbase, servers[1], private_pem)
    finally:
        for server in servers:
            server.stop()


def _always_in_session(app: Any) -> None:
    """Answer market hours with a session spanning the whole (Eastern) day, weekends included.

    The fake derives hours from the real clock, so an equity test would otherwise depend on when it
    runs: the risk engine refuses entries and the monitor defers closes outside market hours.
    """

    @app.before_request
    def _whole_day_session() -> Any:
        if request.path != "/marketdata/v1/markets":
            return None
        eastern = ZoneInfo("America/New_York")
        day = datetime.fromisoformat(request.args.get("date") or datetime.now(eastern).date().isoformat())
        opens = day.replace(tzinfo=eastern)
        hours = {"regularMarket": [{"start": opens.isoformat(), "end": (opens + timedelta(days=1)).isoformat()}]}
        return jsonify(equity={"EQ": {"date": day.date().isoformat(), "isOpen": True, "sessionHours": hours}})


# ---------------------------------------------------------------------------------- venues


class Venue:
    """One broker connection of one trader, and what a test may do at that broker."""

    name = ""
    symbol = CRYPTO
    quantity = Decimal("0.01")

    def __init__(self, user: User, connection: BrokerConnection, fakes: Fakes):
        self.user, self.connection, self.fakes = user, connection, fakes

    def ticket(self, **fields: Any) -> OrderTicket:
        """A market buy of ``quantity`` with a stop-loss 5% under the market."""
        raise NotImplementedError

    def breach(self, trade: Trade) -> None:
        """Make the market cross the trade's protection (its stop-loss where the price can be steered)."""
        raise NotImplementedError

    def execute(self, broker_order_id: str) -> None:
        """Make the broker execute a market order that still rests (a no-op where they fill at once)."""

    def executions(self) -> list[Execution]:
        """Every execution the broker booked for ``symbol``, in order."""
        raise NotImplementedError

    def market_sells(self) -> int:
        """How many market sell orders (closing exits) the broker received."""
        raise NotImplementedError

    def account(self) -> str:
        """The account id the broker's calls take."""
        return connections.trading_account_id(self.connection)

    def sold(self) -> Decimal:
        """Everything the broker sold for this account in ``symbol``."""
        return sum((e.quantity for e in self.executions() if e.side == OrderSide.SELL), Decimal(0))

    def bought(self) -> Decimal:
        """Everything the broker bought for this account in ``symbol``."""
        return sum((e.quantity for e in self.executions() if e.side == OrderSide.BUY), Decimal(0))

    def expected_pnl(self) -> Decimal:
        """Realized P&L of a long that is fully closed, from the broker's own bookings."""
        value = sum(
            (e.quantity * e.price * (1 if e.side == OrderSide.SELL else -1) for e in self.executions()), Decimal(0)
        )
        return value - sum((e.fee for e in self.executions()), Decimal(0))


class PaperVenue(Venue):
    """The built-in paper broker: market orders fill at once at synthetic prices."""

    name = "paper"

    def ticket(self, **fields: Any) -> OrderTicket:
        """A protected BTC buy priced off the live synthetic quote."""
        return ticket(self.connection, **fields)

    def breach(self, trade: Trade) -> None:
        """Synthetic prices cannot be steered: give the trade a take-profit the market has already
        crossed (emulated by the monitor). Moving the stop above the market instead would make the
        watchdog re-place the broker stop there, and the paper broker would fill it at once."""
        bid = connections.broker_for(self.connection).quotes([self.symbol])[self.symbol].bid
        trade.take_profit_price = (bid / 2).quantize(Decimal("0.01"))
        db.session.commit()

    def _orders(self) -> list[PaperOrder]:
        account = db.session.scalar(db.select(PaperAccount).where(PaperAccount.connection_id == self.connection.id))
        assert account is not None
        statement = db.select(PaperOrder).where(PaperOrder.account_id == account.id, PaperOrder.symbol == self.symbol)
        return list(db.session.scalars(statement.order_by(PaperOrder.id)))

    def executions(self) -> list[Execution]:
        """Fills from the paper broker's own order book."""
        return [
            Execution(o.side, Decimal(f["quantity"]), Decimal(f["price"]), Decimal(f["commission"]))
            for o in self._orders()
            for f in o.fills
        ]

    def market_sells(self) -> int:
        """Market sells in the paper order book."""
        return sum(o.side == OrderSide.SELL and o.order_type == OrderType.MARKET for o in self._orders())


class SchwabVenue(Venue):
    """The Schwab fake over HTTP: orders rest WORKING until the test executes them."""

    name = "schwab"
    symbol = EQUITY
    quantity = Decimal(5)

    def ticket(self, **fields: Any) -> OrderTicket:
        """A market buy of 5 AAPL (quoted 99.99/100.01) with a stop at 95."""
        base: dict[str, Any] = {
            "connection_id": self.connection.id,
            "symbol": EQUITY,
            "side": OrderSide.BUY,
            "quantity": self.quantity,
            "stop_loss_price": Decimal("95.00"),
        }
        return OrderTicket(**(base | fields))

    def breach(self, trade: Trade) -> None:
        """AAPL falls to 90: through the stop at 95."""
        self.fakes.schwab.set_price(EQUITY, "90.00", bid="89.99", ask="90.01")

    def execute(self, broker_order_id: str) -> None:
        """Fill the rest of a working market order at the touch (a buy at the ask, a sell at the bid)."""
        state = self.fakes.schwab
        with state.lock:
            order = state.orders[broker_order_id]
            if order["status"] != "WORKING":
                return
            buying = order["orderLegCollection"][0]["instruction"] in ("BUY", "BUY_TO_COVER")
            price = state.quotes[EQUITY]["askPrice" if buying else "bidPrice"]
            state.fill(broker_order_id, order["remainingQuantity"], f"{price:.2f}")

    def executions(self) -> list[Execution]:
        """Execution legs of every order at the fake (Schwab charges no equity commission)."""
        found = []
        for order in self.fakes.schwab.orders.values():
            side = OrderSide(order["orderLegCollection"][0]["instruction"].lower())
            for activity in order["orderActivityCollection"]:
                for leg in activity["executionLegs"]:
                    found.append(Execution(side, Decimal(leg["quantity"]), Decimal(leg["price"])))
        return found

    def market_sells(self) -> int:
        """Market SELL bodies posted to the fake."""
        return sum(
            body.get("orderType") == "MARKET" and body["orderLegCollection"][0]["instruction"] == "SELL"
            for body in self.fakes.schwab.received_payloads
        )


class CoinbaseVenue(Venue):
    """The Coinbase fake over HTTP: market orders fill at once at the touch, with a 0.6% fee."""

    name = "coinbase"

    def ticket(self, **fields: Any) -> OrderTicket:
        """A market buy of 0.01 BTC (quoted 50000/50010) with a stop at 47500."""
        base: dict[str, Any] = {
            "connection_id": self.connection.id,
            "symbol": CRYPTO,
            "side": OrderSide.BUY,
            "quantity": self.quantity,
            "stop_loss_price": Decimal("47500.00"),
        }
        return OrderTicket(**(base | fields))

    def breach(self, trade: Trade) -> None:
        """BTC falls to 47000: through the stop at 47500."""
        self.fakes.coinbase.set_price(CRYPTO, "47000.00", "47010.00")

    def execute(self, broker_order_id: str) -> None:
        """Fill what is left of an order still open at the fake (a stop-limit at its limit price)."""
        fake = self.fakes.coinbase
        with fake.lock:
            order = fake.orders[broker_order_id]
            if order["status"] != "OPEN":
                return
            size = Decimal(next(iter(order["order_configuration"].values()))["base_size"])
            fake.fill(broker_order_id, str(size - Decimal(order["filled_size"])))

    def executions(self) -> list[Execution]:
        """The fake's fills with their commissions."""
        return [
            Execution(OrderSide(f["side"].lower()), Decimal(f["size"]), Decimal(f["price"]), Decimal(f["commission"]))
            for f in self.fakes.coinbase.fills
            if f["product_id"] == CRYPTO
        ]

    def market_sells(self) -> int:
        """Market SELL creates posted to the fake."""
        return sum(
            r.body["side"] == "SELL" and "market_market_ioc" in r.body["order_configuration"]
            for r in self.fakes.coinbase.create_requests()
        )


VENUES = ("paper", "schwab", "coinbase")


def open_venue(name: str, fakes: Fakes, user: User) -> Venue:
    """Connect ``user`` to the named broker through the real connection services."""
    if name == "paper":
        return PaperVenue(user, connections.create_paper_connection(user, "Paper", Decimal("1000000")), fakes)
    if name == "schwab":
        return SchwabVenue(user, _schwab_login(user), fakes)
    if name == "coinbase":
        connection = connections.add_coinbase_connection(user, COINBASE_KEY_NAME, fakes.coinbase_private_pem)
        return CoinbaseVenue(user, connection, fakes)
    raise ValueError(name)


def _schwab_login(user: User) -> BrokerConnection:
    """The OAuth login of a user with one Schwab account."""
    [connection] = schwab_connections(user)
    return connection


def schwab_connections(user: User) -> list[BrokerConnection]:
    """The OAuth login as the user does it: authorize at the fake, then complete with the code
    (one connection per account the fake holds)."""
    pending = schwab_logins.begin_login()
    answer = requests.get(pending.url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    return list(schwab_logins.complete_login(user, code, pending.verifier))


# ---------------------------------------------------------------------------------- polling


def eventually(
    check: Callable[[], T | None],
    what: str,
    *,
    nudge: Callable[[], Any] | None = None,
    timeout: float = 15.0,
    nudge_every: float = 0.25,
) -> T:
    """Poll ``check`` until it returns something truthy, for at most ``timeout`` seconds.

    Before each look the session's transaction is ended (so the worker's commits are visible and
    nothing of ours holds a lock it needs): commit your own changes before calling. ``nudge`` (for
    example enqueueing a beat task) is called at most every ``nudge_every`` seconds meanwhile.
    """
    deadline = time.monotonic() + timeout
    nudged = float("-inf")
    while True:
        db.session.rollback()  # ends the read transaction and expires every loaded row
        found = check()
        if found:
            return found
        now = time.monotonic()
        if now > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        if nudge is not None and now - nudged >= nudge_every:
            nudge()
            nudged = now
        time.sleep(0.05)


def orders_of(trade_id: int) -> list[Order]:
    """A trade's orders, oldest first."""
    return list(db.session.scalars(db.select(Order).where(Order.trade_id == trade_id).order_by(Order.id)))


def trade_of(trade_id: int) -> Trade:
    """The trade as stored now."""
    return db.session.get_one(Trade, trade_id)


def closed_trade(trade_id: int) -> Trade | None:
    """The trade once it is CLOSED, else None (for ``eventually``)."""
    trade = trade_of(trade_id)
    return trade if trade.status == TradeStatus.CLOSED else None
