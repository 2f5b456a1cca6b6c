"""Contract tests: the Coinbase client against the stateful fake, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from flask import Flask

from tests.fakes.coinbase import PREFIX, CoinbaseFake, create_coinbase_fake
from tests.fakes.server import FakeServer, Fault
from utils.brokers.base import CandleInterval, OrderRequest
from utils.brokers.coinbase import CoinbaseClient, RequestBudget, build_jwt, load_signing_key
from utils.brokers.http import HttpPolicy
from utils.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from utils.exceptions import (
    AuthenticationError,
    InvalidInputError,
    InvalidOrderError,
    NotFoundError,
    OrderCancellationError,
    OrderRejectedError,
    SymbolNotFoundError,
    UnknownOrderOutcomeError,
)

KEY_NAME = "organizations/org-1/apiKeys/key-1"
FAST = HttpPolicy(timeout=(1.0, 0.5), read_attempts=3, backoff_seconds=0.01)
PRODUCTS = {"BTC-USD": ("0.00000001", "0.01", "0.00001"), "ETH-USD": ("0.0001", "0.01", "0.001")}


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    fmt = serialization.PrivateFormat.PKCS8
    if isinstance(key, ec.EllipticCurvePrivateKey):
        fmt = serialization.PrivateFormat.TraditionalOpenSSL  # what Coinbase hands out: "BEGIN EC PRIVATE KEY"
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


@dataclass
class KeyPair:
    private: ec.EllipticCurvePrivateKey
    private_pem: str
    public_pem: str


@dataclass
class Harness:
    fake: CoinbaseFake
    server: FakeServer
    client: CoinbaseClient
    keys: KeyPair
    sleeps: list[float] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.server.base_url.removeprefix("http://")

    def requests_to(self, method: str, path: str) -> list:  # type: ignore[type-arg]
        return [r for r in self.fake.received if r.method == method and r.path == f"{PREFIX}{path}"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(scope="module")
def keys() -> KeyPair:
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(private, _pem(private), public.decode())


class Router:
    """One server for the whole module (stopping a server costs 0.5 s); each test swaps in a fresh fake."""

    def __init__(self) -> None:
        self.target: Flask | None = None
        self.app = Flask("router")
        self.app.wsgi_app = self.dispatch  # type: ignore[method-assign]

    def dispatch(self, environ: dict, start_response: Any) -> Any:  # type: ignore[type-arg]
        assert self.target is not None
        return self.target(environ, start_response)


@pytest.fixture(scope="module")
def router() -> Iterator[tuple[Router, FakeServer]]:
    routing = Router()
    server = FakeServer(routing.app).start()
    yield routing, server
    server.stop()


def _harness(
    keys: KeyPair, routed: tuple[Router, FakeServer], max_page_size: int = 250, budget: RequestBudget | None = None
) -> Harness:
    routing, server = routed
    fake = create_coinbase_fake(KEY_NAME, keys.public_pem, products=PRODUCTS, max_page_size=max_page_size)
    fake.set_price("BTC-USD", "50000.00", "50010.00")
    fake.set_price("ETH-USD", "3000.00", "3001.00")
    routing.target = fake.app
    sleeps: list[float] = []
    client = CoinbaseClient(
        KEY_NAME,
        keys.private_pem,
        server.base_url,
        policy=FAST,
        budget=budget or RequestBudget(10_000),
        sleep=sleeps.append,
    )
    return Harness(fake, server, client, keys, sleeps)


@pytest.fixture()
def cb(keys: KeyPair, router: tuple[Router, FakeServer]) -> Harness:
    return _harness(keys, router)


@pytest.fixture()
def paged(keys: KeyPair, router: tuple[Router, FakeServer]) -> Harness:
    return _harness(keys, router, max_page_size=2)


def limit(qty: str = "0.5", price: str = "49000", side: OrderSide = OrderSide.BUY, **kw: object) -> OrderRequest:
    fields: dict = {"time_in_force": TimeInForce.GTC, "client_order_id": f"coid-{time.monotonic_ns()}"}  # type: ignore[type-arg]
    fields.update(kw)
    return OrderRequest(
        symbol=str(fields.pop("symbol", "BTC-USD")),
        side=side,
        quantity=Decimal(qty),
        order_type=fields.pop("order_type", OrderType.LIMIT),
        limit_price=Decimal(price) if price else None,
        **fields,
    )


# ------------------------------------------------------------------------------------ auth


def test_every_request_carries_a_fresh_jwt_with_exactly_the_required_header_and_claims(cb: Harness) -> None:
    cb.client.accounts()
    cb.client.quotes(["BTC-USD"])
    tokens = [r.token for r in cb.fake.received]
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    public_key = serialization.load_pem_public_key(cb.keys.public_pem.encode())
    headers = [jwt.get_unverified_header(t) for t in tokens]
    claims = [jwt.decode(t, public_key, algorithms=["ES256"], issuer="cdp") for t in tokens]  # type: ignore[arg-type]
    assert set(headers[0]) == {"alg", "typ", "kid", "nonce"}
    assert headers[0]["alg"] == "ES256" and headers[0]["kid"] == KEY_NAME
    assert headers[0]["nonce"] != headers[1]["nonce"] and int(headers[0]["nonce"], 16) >= 0
    assert set(claims[0]) == {"sub", "iss", "nbf", "exp", "uri"}
    assert claims[0]["sub"] == KEY_NAME and claims[0]["exp"] - claims[0]["nbf"] == 120
    assert abs(claims[0]["nbf"] - time.time()) < 5
    assert claims[0]["uri"] == f"GET {cb.host}{PREFIX}/accounts"
    assert claims[1]["uri"] == f"GET {cb.host}{PREFIX}/best_bid_ask", "no scheme, no query string"


def test_the_fake_refuses_jwts_for_another_host_another_key_expired_or_replayed(cb: Harness) -> None:
    path = f"{PREFIX}/accounts"
    other = ec.generate_private_key(ec.SECP256R1())

    def status(token: str) -> int:
        return requests.get(
            cb.server.base_url + path, headers={"Authorization": f"Bearer {token}"}, timeout=2
        ).status_code

    good = build_jwt(KEY_NAME, cb.keys.private, "GET", cb.host, path)
    assert status(good) == 200
    assert status(good) == 401, "a replayed nonce is refused"
    assert status(build_jwt(KEY_NAME, cb.keys.private, "GET", "api.coinbase.com", path)) == 401
    assert status(build_jwt(KEY_NAME, cb.keys.private, "POST", cb.host, path)) == 401
    assert status(build_jwt(KEY_NAME, other, "GET", cb.host, path)) == 401
    assert status(build_jwt("organizations/o/apiKeys/other", cb.keys.private, "GET", cb.host, path)) == 401
    assert status(build_jwt(KEY_NAME, cb.keys.private, "GET", cb.host, path, now=time.time() - 300)) == 401
    assert requests.get(cb.server.base_url + path, timeout=2).status_code == 401


def test_only_ec_p256_keys_are_accepted_and_the_key_is_never_echoed() -> None:
    with pytest.raises(InvalidInputError, match="not supported yet"):
        load_signing_key(_pem(ed25519.Ed25519PrivateKey.generate()))
    with pytest.raises(InvalidInputError, match="P-256"):
        load_signing_key(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    with pytest.raises(InvalidInputError, match="P-256"):
        load_signing_key(_pem(ec.generate_private_key(ec.SECP384R1())))
    garbage = "-----BEGIN EC PRIVATE KEY-----\nc2VjcmV0LXN0dWZm\n-----END EC PRIVATE KEY-----"
    with pytest.raises(InvalidInputError) as caught:
        load_signing_key(garbage)
    assert "c2VjcmV0" not in str(caught.value) and "BEGIN" not in str(caught.value)


def test_a_key_name_of_the_wrong_form_is_refused(keys: KeyPair) -> None:
    with pytest.raises(InvalidInputError, match="organizations"):
        CoinbaseClient("my-key", keys.private_pem)


def test_an_intermittent_401_is_retried_once_with_a_fresh_jwt_and_the_same_client_order_id(cb: Harness) -> None:
    cb.fake.plan.add("POST /api/v3/brokerage/orders", Fault.UNAUTHORIZED)
    order = cb.client.place_order("USD", limit(client_order_id="coid-401"))
    creates = cb.fake.create_requests()
    assert len(creates) == 2
    assert [c.body["client_order_id"] for c in creates] == ["coid-401", "coid-401"]
    assert creates[0].body == creates[1].body and creates[0].token != creates[1].token
    assert cb.fake.order_count() == 1
    assert order.broker_order_id in cb.fake.orders


def test_a_second_401_is_an_authentication_error_without_secrets(cb: Harness) -> None:
    cb.fake.plan.add("GET /api/v3/brokerage/accounts", Fault.UNAUTHORIZED, times=2)
    with pytest.raises(AuthenticationError) as caught:
        cb.client.accounts()
    assert len(cb.requests_to("GET", "/accounts")) == 2
    text = f"{caught.value} {caught.value.details}"
    assert "PRIVATE KEY" not in text and "eyJ" not in text
    cb.fake.plan.add("GET /api/v3/brokerage/accounts", Fault.UNAUTHORIZED)
    assert cb.client.accounts() == [], "one 401 is retried"


# ------------------------------------------------------------------------------------ accounts and quotes


def test_accounts_follow_the_cursor_over_several_pages(paged: Harness) -> None:
    currencies = ["USD", "BTC", "ETH", "SOL", "USDC"]
    ids = [paged.fake.set_balance(c, "1") for c in currencies]
    accounts = paged.client.accounts()
    assert [a.account_id for a in accounts] == ids
    assert [a.display_number for a in accounts] == currencies
    assert accounts[0].description == "USD Wallet"
    cursors = [r.query.get("cursor") for r in paged.requests_to("GET", "/accounts")]
    assert cursors == [None, ["2"], ["4"]]


def test_balance_and_positions_value_holdings_at_the_midpoint(cb: Harness) -> None:
    usd = cb.fake.set_balance("USD", "1000.50", hold="49.50")
    cb.fake.set_balance("BTC", "0.5", hold="0.1")
    cb.fake.set_balance("ETH", "0")
    positions = cb.client.positions("USD")
    assert len(positions) == 1
    btc = positions[0]
    assert (btc.symbol, btc.quantity, btc.average_price) == ("BTC-USD", Decimal("0.6"), Decimal(0))
    assert btc.market_value == Decimal("0.6") * Decimal("50005")
    balance = cb.client.balance(usd)
    assert balance == cb.client.balance("usd")
    assert (balance.currency, balance.cash, balance.buying_power) == ("USD", Decimal("1000.50"), Decimal("1000.50"))
    assert balance.equity == Decimal("1050.00") + Decimal("30003.0")
    with pytest.raises(NotFoundError):
        cb.client.balance("JPY")


def test_quotes_batch_many_products_per_call_and_drop_unusable_books(cb: Harness) -> None:
    cb.fake.set_price("SOL-USD", "0", "150.00")
    symbols = ["BTC-USD", "ETH-USD", "SOL-USD"] + [f"X{i}-USD" for i in range(147)]
    quotes = cb.client.quotes(symbols)
    assert set(quotes) == {"BTC-USD", "ETH-USD"}
    btc = quotes["BTC-USD"]
    assert (btc.bid, btc.ask, btc.mark, btc.last) == (
        Decimal("50000.00"),
        Decimal("50010.00"),
        Decimal("50005"),
        Decimal("50005"),
    )
    assert btc.time.tzinfo is not None and abs(datetime.now(UTC) - btc.time) < timedelta(seconds=10)
    calls = cb.requests_to("GET", "/best_bid_ask")
    assert [len(c.query["product_ids"]) for c in calls] == [100, 50]
    assert cb.client.quotes([]) == {}


def test_reads_honour_retry_after_and_retry_server_errors(cb: Harness) -> None:
    cb.fake.plan.add("GET /api/v3/brokerage/best_bid_ask", Fault.RATE_LIMITED, retry_after=7)
    cb.fake.plan.add("GET /api/v3/brokerage/best_bid_ask", Fault.SERVER_ERROR)
    assert "BTC-USD" in cb.client.quotes(["BTC-USD"])
    assert cb.sleeps == [7.0, 0.02]
    cb.fake.plan.add("GET /api/v3/brokerage/accounts", Fault.UNAVAILABLE, times=2)
    cb.fake.set_balance("USD", "5")
    assert len(cb.client.accounts()) == 1
    assert len(cb.requests_to("GET", "/accounts")) == 3


def test_market_hours_and_capabilities(cb: Harness) -> None:
    at = datetime(2024, 12, 25, 3, 0, tzinfo=UTC)
    hours = cb.client.market_hours("BTC-USD", at)
    assert hours.is_open and hours.opens_at == datetime(2024, 12, 25, tzinfo=UTC)
    assert hours.closes_at == datetime(2024, 12, 26, tzinfo=UTC)
    caps = cb.client.capabilities
    assert not caps.native_stop and caps.stop_limit and not caps.trailing_stop and caps.replace
    assert caps.always_open and caps.fractional_quantity and caps.max_symbols_per_quote == 100
    assert cb.fake.received == []


def test_the_price_increment_is_the_products_quote_increment_fetched_once(cb: Harness) -> None:
    cb.fake.add_product("SOL-USD", "0.001", "0.05")
    assert cb.client.price_increment("SOL-USD", Decimal("190.35")) == Decimal("0.05")
    assert cb.client.price_increment("BTC-USD", Decimal("0.5")) == Decimal("0.01")
    assert cb.client.price_increment("SOL-USD", Decimal("1")) == Decimal("0.05")
    assert len(cb.requests_to("GET", "/products/SOL-USD")) == 1, "product increments are cached"
    with pytest.raises(SymbolNotFoundError):
        cb.client.price_increment("NOPE-USD", Decimal(1))


# ------------------------------------------------------------------------------------ placing orders


def test_a_limit_order_is_rounded_down_to_the_product_increments(cb: Harness) -> None:
    order = cb.client.place_order("USD", limit("0.123456789", "50000.129"))
    sent = cb.fake.create_requests()[0].body
    assert sent["order_configuration"] == {
        "limit_limit_gtc": {"base_size": "0.12345678", "limit_price": "50000.12", "post_only": False}
    }
    assert sent["side"] == "BUY" and sent["product_id"] == "BTC-USD"
    assert order.status == OrderStatus.SUBMITTED and order.quantity == Decimal("0.12345678")
    assert order.limit_price == Decimal("50000.12")
    fetched = cb.client.get_order("USD", order.broker_order_id)
    assert fetched.status == OrderStatus.WORKING and fetched.client_order_id == order.client_order_id
    cb.client.place_order("USD", limit("1", "3000.005"))
    assert len(cb.requests_to("GET", "/products/BTC-USD")) == 1, "product increments are cached"


def test_a_day_limit_order_is_good_till_the_end_of_the_utc_day(cb: Harness) -> None:
    cb.client.place_order("USD", limit(time_in_force=TimeInForce.DAY))
    config = cb.fake.create_requests()[0].body["order_configuration"]
    end = datetime.fromisoformat(config["limit_limit_gtd"]["end_time"])
    assert end.date() == datetime.now(UTC).date() and (end.hour, end.minute, end.second) == (23, 59, 59)


def test_a_market_order_fills_with_fills_commission_and_average_price(cb: Harness) -> None:
    order = cb.client.place_order("USD", limit("0.01", "", order_type=OrderType.MARKET))
    assert cb.fake.create_requests()[0].body["order_configuration"] == {
        "market_market_ioc": {"base_size": "0.01000000"}
    }
    filled = cb.client.get_order("USD", order.broker_order_id)
    assert filled.status == OrderStatus.FILLED and filled.order_type == OrderType.MARKET
    assert filled.filled_quantity == Decimal("0.01") and filled.remaining_quantity == 0
    assert filled.average_fill_price == Decimal("50010.00") and filled.closed_at is not None
    assert len(filled.fills) == 1 and filled.fills[0].commission == Decimal("3.00060000")


@pytest.mark.parametrize(("side", "direction"), [(OrderSide.SELL, "STOP_DOWN"), (OrderSide.BUY, "STOP_UP")])
def test_stop_limit_orders_carry_the_stop_direction_of_their_side(cb: Harness, side: OrderSide, direction: str) -> None:
    request = limit("0.1", "44000", side, order_type=OrderType.STOP_LIMIT, stop_price=Decimal("45000.001"))
    order = cb.client.place_order("USD", request)
    params = cb.fake.create_requests()[0].body["order_configuration"]["stop_limit_stop_limit_gtc"]
    assert params == {
        "base_size": "0.10000000",
        "limit_price": "44000.00",
        "stop_price": "45000.00",
        "stop_direction": f"STOP_DIRECTION_{direction}",
    }
    fetched = cb.client.get_order("USD", order.broker_order_id)
    assert fetched.order_type == OrderType.STOP_LIMIT and fetched.stop_price == Decimal("45000.00")


@pytest.mark.parametrize(
    "request_",
    [
        limit(order_type=OrderType.STOP, stop_price=Decimal("45000")),
        limit(order_type=OrderType.TRAILING_STOP, trail_offset=Decimal("100")),
        limit(order_type=OrderType.TRAILING_STOP, trail_percent=Decimal("2")),
        limit(side=OrderSide.SELL_SHORT),
    ],
)
def test_orders_coinbase_cannot_do_natively_are_refused_before_any_call(cb: Harness, request_: OrderRequest) -> None:
    with pytest.raises(InvalidOrderError) as caught:
        cb.client.place_order("USD", request_)
    if request_.order_type in (OrderType.STOP, OrderType.TRAILING_STOP):
        assert "emulated" in caught.value.message
    assert cb.fake.received == []


def test_sizes_below_the_minimum_and_day_stop_limits_are_refused_without_sending(cb: Harness) -> None:
    with pytest.raises(InvalidOrderError, match="minimum"):
        cb.client.place_order("USD", limit("0.000001"))
    stop_day = limit(order_type=OrderType.STOP_LIMIT, stop_price=Decimal("1"), time_in_force=TimeInForce.DAY)
    with pytest.raises(InvalidOrderError, match="gtc"):
        cb.client.place_order("USD", stop_day)
    with pytest.raises(SymbolNotFoundError):
        cb.client.place_order("USD", limit(symbol="NOPE-USD"))
    assert cb.fake.create_requests() == []


@pytest.mark.parametrize(
    ("reason", "readable"),
    [("INSUFFICIENT_FUND", "Insufficient funds"), ("INVALID_LIMIT_PRICE_POST_ONLY", "would cross the book")],
)
def test_success_false_is_a_rejection_with_a_readable_reason(cb: Harness, reason: str, readable: str) -> None:
    cb.fake.plan.add("POST /api/v3/brokerage/orders", Fault.REJECT, reason=reason)
    with pytest.raises(OrderRejectedError, match=readable) as caught:
        cb.client.place_order("USD", limit(client_order_id="coid-rej"))
    assert caught.value.details["reason_code"] == reason
    assert caught.value.details["client_order_id"] == "coid-rej"
    assert cb.fake.order_count() == 0


def test_an_accepted_answer_without_an_order_id_is_an_unknown_outcome(cb: Harness) -> None:
    cb.fake.plan.add("POST /api/v3/brokerage/orders", Fault.NO_LOCATION)
    with pytest.raises(UnknownOrderOutcomeError):
        cb.client.place_order("USD", limit(client_order_id="coid-noid"))
    found = cb.client.find_by_client_order_id("coid-noid")
    assert found is not None and found.broker_order_id in cb.fake.orders


@pytest.mark.parametrize("fault", [Fault.READ_TIMEOUT, Fault.DROP_AFTER_ACCEPT])
def test_a_lost_create_answer_is_unknown_then_reconciled_by_client_order_id(cb: Harness, fault: Fault) -> None:
    cb.fake.plan.add("POST /api/v3/brokerage/orders", fault, seconds=1.0)
    with pytest.raises(UnknownOrderOutcomeError) as caught:
        cb.client.place_order("USD", limit(client_order_id="coid-lost"))
    assert caught.value.details["client_order_id"] == "coid-lost"
    found = cb.client.find_by_client_order_id("coid-lost", product_id="BTC-USD")
    assert found is not None and found.client_order_id == "coid-lost"
    assert len(cb.fake.create_requests()) == 1, "never sent twice"
    assert cb.fake.order_count() == 1


def test_a_5xx_on_create_is_unknown_and_reconciliation_finds_nothing(cb: Harness) -> None:
    cb.fake.plan.add("POST /api/v3/brokerage/orders", Fault.SERVER_ERROR)
    with pytest.raises(UnknownOrderOutcomeError):
        cb.client.place_order("USD", limit(client_order_id="coid-500"))
    assert cb.client.find_by_client_order_id("coid-500") is None
    assert len(cb.fake.create_requests()) == 1


def test_a_duplicate_client_order_id_returns_the_existing_order(cb: Harness) -> None:
    first = cb.client.place_order("USD", limit(client_order_id="coid-dup"))
    second = cb.client.place_order("USD", limit(client_order_id="coid-dup"))
    assert first.broker_order_id == second.broker_order_id and cb.fake.order_count() == 1


# ------------------------------------------------------------------------------------ order life


def test_partial_fills_report_filled_quantity_and_average_price(cb: Harness) -> None:
    cb.fake.plan.add("POST /api/v3/brokerage/orders", Fault.PARTIAL_FILL, fraction="0.4", price="48000")
    order = cb.client.place_order("USD", limit("1", "49000"))
    partial = cb.client.get_order("USD", order.broker_order_id)
    assert partial.status == OrderStatus.PARTIALLY_FILLED
    assert (partial.filled_quantity, partial.remaining_quantity) == (Decimal("0.4"), Decimal("0.6"))
    assert partial.average_fill_price == Decimal("48000")
    cb.fake.fill(order.broker_order_id, "0.6", "49000")
    done = cb.client.get_order("USD", order.broker_order_id)
    assert done.status == OrderStatus.FILLED and done.average_fill_price == Decimal("48600")
    fills = cb.client.fills("USD", order.broker_order_id)
    assert [f.quantity for f in fills] == [Decimal("0.4"), Decimal("0.6")]
    assert fills[0].fill_id == cb.fake.fills[0]["entry_id"] and fills[0].commission == Decimal("115.20000000")
    assert done.fees == sum((f.commission for f in fills), Decimal(0)) > 0


def test_cancel_then_cancel_again_is_refused_with_the_reason(cb: Harness) -> None:
    order = cb.client.place_order("USD", limit())
    cb.client.cancel_order("USD", order.broker_order_id)
    assert cb.client.get_order("USD", order.broker_order_id).status == OrderStatus.CANCELLED
    with pytest.raises(OrderCancellationError, match="no longer be cancelled"):
        cb.client.cancel_order("USD", order.broker_order_id)
    with pytest.raises(OrderCancellationError, match="unknown"):
        cb.client.cancel_order("USD", "no-such-order")
    with pytest.raises(NotFoundError):
        cb.client.get_order("USD", "no-such-order")


def test_replace_edits_in_place_and_keeps_the_same_order_id(cb: Harness) -> None:
    order = cb.client.place_order("USD", limit("0.5", "49000"))
    edited = cb.client.replace_order("USD", order.broker_order_id, limit("0.755555555", "48500.555"))
    assert edited.broker_order_id == order.broker_order_id
    assert (edited.quantity, edited.limit_price) == (Decimal("0.75555555"), Decimal("48500.55"))
    assert cb.requests_to("POST", "/orders/edit")[0].body == {
        "order_id": order.broker_order_id,
        "size": "0.75555555",
        "price": "48500.55",
    }
    cb.fake.fill(order.broker_order_id, "0.5")
    with pytest.raises(OrderRejectedError, match="below the filled size"):
        cb.client.replace_order("USD", order.broker_order_id, limit("0.1", "48500"))
    with pytest.raises(InvalidOrderError):
        cb.client.replace_order("USD", order.broker_order_id, limit(time_in_force=TimeInForce.DAY))


def test_list_orders_pages_through_the_window_and_filters_by_status(paged: Harness) -> None:
    now = datetime.now(UTC)
    for minutes in range(5):
        created = (now - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        paged.fake.add_order(created_time=created)
    paged.fake.add_order(created_time=(now - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    paged.fake.add_order(status="FILLED", filled_size="1", average_filled_price="1", created_time=created)
    partial = paged.fake.add_order(filled_size="0.5", average_filled_price="1", created_time=created)
    window = (now - timedelta(hours=1), now + timedelta(minutes=1))
    assert len(paged.client.list_orders("USD", *window)) == 7
    assert len(paged.requests_to("GET", "/orders/historical/batch")) == 4
    working = paged.client.list_orders("USD", *window, status=OrderStatus.WORKING)
    assert len(working) == 6 and partial["order_id"] in {o.broker_order_id for o in working}
    assert paged.requests_to("GET", "/orders/historical/batch")[-1].query["order_status"] == ["OPEN"]
    partials = paged.client.list_orders("USD", *window, status=OrderStatus.PARTIALLY_FILLED)
    assert [o.broker_order_id for o in partials] == [partial["order_id"]]
    filled = paged.client.list_orders("USD", *window, status=OrderStatus.FILLED)
    assert len(filled) == 1 and filled[0].status == OrderStatus.FILLED


def test_find_by_client_order_id_searches_every_page(paged: Harness) -> None:
    for _ in range(5):
        paged.fake.add_order()
    target = paged.fake.add_order(client_order_id="needle", created_time="2020-01-01T00:00:00Z")
    found = paged.client.find_by_client_order_id("needle")
    assert found is not None and found.broker_order_id == target["order_id"]
    assert paged.client.find_by_client_order_id("absent") is None


def test_transactions_are_built_from_fills_with_cash_signs(cb: Harness) -> None:
    buy = cb.client.place_order("USD", limit("0.1", "", order_type=OrderType.MARKET))
    cb.client.place_order("USD", limit("0.1", "", OrderSide.SELL, order_type=OrderType.MARKET))
    now = datetime.now(UTC)
    activity = cb.client.transactions("USD", now - timedelta(minutes=5), now + timedelta(minutes=1))
    assert [t.kind for t in activity] == ["trade", "trade"]
    assert activity[0].amount == -(Decimal("5001.000") + Decimal("30.00600000"))
    assert activity[1].amount == Decimal("5000.000") - Decimal("30.00000000")
    assert activity[0].symbol == "BTC-USD" and activity[0].transaction_id == cb.fake.fills[0]["entry_id"]
    assert cb.client.fills("USD", buy.broker_order_id)[0].price == Decimal("50010.00")
    assert cb.client.transactions("USD", now - timedelta(days=2), now - timedelta(days=1)) == []


# ------------------------------------------------------------------------------------ request budget


def test_the_request_budget_spaces_requests_beyond_the_burst() -> None:
    clock = FakeClock()
    budget = RequestBudget(5, clock=clock, sleep=clock.sleep)
    waits = [budget.acquire() for _ in range(8)]
    assert waits[:5] == [0.0] * 5
    assert waits[5:] == pytest.approx([0.2, 0.2, 0.2])
    clock.now += 10
    assert [budget.acquire() for _ in range(5)] == [0.0] * 5, "refilled, but never beyond the burst"
    assert budget.acquire() == pytest.approx(0.2)


def test_the_client_takes_one_budget_token_per_http_attempt(keys: KeyPair, router: tuple[Router, FakeServer]) -> None:
    clock = FakeClock()
    harness = _harness(keys, router, budget=RequestBudget(3, clock=clock, sleep=clock.sleep))
    harness.fake.plan.add("GET /api/v3/brokerage/accounts", Fault.SERVER_ERROR)
    for _ in range(3):
        harness.client.accounts()
    assert len(harness.fake.received) == 4
    assert clock.sleeps == pytest.approx([1 / 3]), "the retried attempt consumed a token too"


def test_candles_arrive_newest_first_and_are_returned_oldest_first_as_decimals(cb: Harness) -> None:
    start = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)
    for minutes, close in ((0, "50005.10"), (5, "50011.20"), (90, "1")):
        cb.fake.add_candle("BTC-USD", start + timedelta(minutes=minutes), ("50000.00", "50020.00", "49990.00", close))
    bars = cb.client.candles("BTC-USD", CandleInterval.FIVE_MINUTES, start, start + timedelta(hours=1))
    assert [(bar.time, bar.close) for bar in bars] == [
        (start, Decimal("50005.10")),
        (start + timedelta(minutes=5), Decimal("50011.20")),
    ]
    [call] = cb.requests_to("GET", "/products/BTC-USD/candles")
    assert call.query["granularity"] == ["FIVE_MINUTE"] and call.query["start"] == [str(int(start.timestamp()))]


def test_a_long_candle_window_is_cut_to_the_latest_350_bars_and_unknown_products_are_refused(cb: Harness) -> None:
    end = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)
    assert cb.client.candles("BTC-USD", CandleInterval.ONE_MINUTE, end - timedelta(days=1), end) == []
    [call] = cb.requests_to("GET", "/products/BTC-USD/candles")
    assert int(call.query["end"][0]) - int(call.query["start"][0]) == 350 * 60
    with pytest.raises(SymbolNotFoundError):
        cb.client.candles("NOPE-USD", CandleInterval.ONE_DAY, end - timedelta(days=30), end)
