"""Contract tests of the Schwab client against the Schwab fake over real HTTP on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask

from tests.fakes.schwab import ORDER_RULE, ORDERS_RULE, SchwabFakeState, create_schwab_fake
from tests.fakes.server import FakeServer, Fault
from utils.brokers.base import CandleInterval, OrderRequest
from utils.brokers.http import HttpPolicy
from utils.brokers.schwab import (
    OAuthTokens,
    SchwabClient,
    SchwabOAuth,
    WriteThrottle,
    make_pkce_pair,
    refresh_token_days_left,
)
from utils.brokers.schwab_payloads import quote_problem
from utils.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from utils.exceptions import (
    AuthenticationError,
    BrokerTemporaryError,
    InvalidInputError,
    InvalidOrderError,
    OrderCancellationError,
    OrderRejectedError,
    TokenExpiredError,
    UnknownOrderOutcomeError,
)

APP_KEY, APP_SECRET, CALLBACK = "app-key-123", "app-secret-456", "https://127.0.0.1:8182/callback"
FAST = HttpPolicy(timeout=(1.0, 0.5), read_attempts=3, backoff_seconds=0.01)
PLACE = f"POST {ORDERS_RULE}"
ACCOUNT_NUMBERS = "GET /trader/v1/accounts/accountNumbers"


class MemoryTokenStore:
    """The TokenStore protocol in memory; a threading.Lock stands in for the cross-process lock."""

    def __init__(self, tokens: OAuthTokens):
        self.tokens = tokens
        self.saves = 0
        self._lock = threading.Lock()

    def load(self) -> OAuthTokens:
        return self.tokens

    def save(self, tokens: OAuthTokens) -> None:
        self.tokens = tokens
        self.saves += 1

    def refresh_lock(self) -> threading.Lock:
        return self._lock


@dataclass
class Env:
    server: FakeServer
    state: SchwabFakeState
    account: str
    store: MemoryTokenStore
    sleeps: list[float] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)

    def client(self, store: MemoryTokenStore | None = None) -> SchwabClient:
        return SchwabClient(
            store or self.store,
            client_id=APP_KEY,
            client_secret=APP_SECRET,
            redirect_uri=CALLBACK,
            base_url=self.server.base_url,
            policy=FAST,
            write_throttle=lambda: self.writes.append("write"),
            sleep=self.sleeps.append,
        )

    def tokens(self, access_left: timedelta = timedelta(minutes=30)) -> OAuthTokens:
        access, refresh = self.state.issue_tokens()
        now = datetime.now(UTC)
        return OAuthTokens(access, refresh, now + access_left, now)

    def oauth(self) -> SchwabOAuth:
        return self.client().oauth


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeServer, list[Flask]]]:
    """One server per module (stopping one takes ~0.5 s); each test swaps in a fresh fake app."""
    current: list[Flask] = []
    dispatch = Flask("schwab_dispatch")
    dispatch.wsgi_app = lambda environ, start_response: current[0](environ, start_response)  # type: ignore[method-assign]
    server = FakeServer(dispatch).start()
    yield server, current
    server.stop()


@pytest.fixture()
def env(served: tuple[FakeServer, list[Flask]]) -> Env:
    server, current = served
    app, state = create_schwab_fake(APP_KEY, APP_SECRET, redirect_uri=CALLBACK)
    current[:] = [app]
    account = state.add_account("12345678", cash="10000", buying_power="20000")
    state.set_price("MSFT", "190.90", bid="190.85", ask="190.95")
    state.set_price("AAPL", "172.15")
    state.set_price("PENY", "0.1300")
    access, refresh = state.issue_tokens()
    now = datetime.now(UTC)
    return Env(server, state, account, MemoryTokenStore(OAuthTokens(access, refresh, now + timedelta(minutes=30), now)))


def order(
    side: OrderSide = OrderSide.BUY,
    order_type: OrderType = OrderType.LIMIT,
    quantity: str = "10",
    symbol: str = "MSFT",
    **extra: Any,
) -> OrderRequest:
    if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        extra.setdefault("limit_price", Decimal("190.90"))
    return OrderRequest(symbol, side, Decimal(quantity), order_type, client_order_id="coid-1", **extra)


# ---------------------------------------------------------------------------- OAuth


def test_login_exchanges_the_code_with_pkce_for_working_tokens(env: Env) -> None:
    oauth = env.oauth()
    verifier, challenge = make_pkce_pair()
    url = oauth.authorize_url(state="csrf-state-1", code_challenge=challenge)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["redirect_uri"] == [CALLBACK]
    redirect = requests.get(url, allow_redirects=False, timeout=2)
    assert redirect.status_code == 302 and redirect.headers["Location"].startswith(CALLBACK)
    callback = parse_qs(urlsplit(redirect.headers["Location"]).query)
    assert callback["state"] == ["csrf-state-1"] and callback["code"][0].endswith("@")
    tokens = oauth.exchange_code(callback["code"][0], verifier)
    expected_expiry = datetime.now(UTC) + timedelta(seconds=1800)
    assert abs((tokens.access_expires_at - expected_expiry).total_seconds()) < 5
    assert refresh_token_days_left(tokens, datetime.now(UTC)) == pytest.approx(7, abs=0.01)
    accounts = env.client(MemoryTokenStore(tokens)).accounts()
    assert [a.account_id for a in accounts] == [env.account]


def test_a_wrong_code_verifier_or_client_secret_is_refused(env: Env) -> None:
    oauth = env.oauth()
    _, challenge = make_pkce_pair()
    other_verifier, _ = make_pkce_pair()
    code = _authorize(oauth, challenge)
    with pytest.raises(AuthenticationError) as caught:
        oauth.exchange_code(code, other_verifier)
    assert not isinstance(caught.value, TokenExpiredError)
    bad_secret = SchwabOAuth(APP_KEY, "wrong", CALLBACK, env.server.base_url)
    verifier, challenge = make_pkce_pair()
    with pytest.raises(AuthenticationError):
        bad_secret.exchange_code(_authorize(oauth, challenge), verifier)
    assert env.state.token_grants["authorization_code"] == 0


def _authorize(oauth: SchwabOAuth, challenge: str) -> str:
    redirect = requests.get(oauth.authorize_url("s", challenge), allow_redirects=False, timeout=2)
    return parse_qs(urlsplit(redirect.headers["Location"]).query)["code"][0]


def test_refresh_token_days_left_counts_down_from_login() -> None:
    login = datetime(2030, 1, 1, 12, tzinfo=UTC)
    tokens = OAuthTokens("a", "r", login + timedelta(minutes=30), login)
    assert refresh_token_days_left(tokens, login + timedelta(days=5, hours=12)) == pytest.approx(1.5)
    assert refresh_token_days_left(tokens, login + timedelta(days=8)) < 0
    assert "'r'" not in repr(tokens) and "'a'" not in repr(tokens), "tokens never show in repr"


def test_access_token_is_refreshed_before_it_expires_and_not_otherwise(env: Env) -> None:
    env.store.tokens = env.tokens(access_left=timedelta(minutes=20))
    env.client().accounts()
    assert env.state.refresh_count == 0
    old = env.tokens(access_left=timedelta(minutes=4))
    env.store.tokens = old
    env.client().accounts()
    assert env.state.refresh_count == 1 and env.store.saves == 1
    fresh = env.store.tokens
    assert fresh.access_token != old.access_token and fresh.refresh_token == old.refresh_token
    assert fresh.refresh_issued_at == old.refresh_issued_at, "the 7-day clock starts at login, not at refresh"


def test_eight_concurrent_callers_cause_exactly_one_refresh(env: Env) -> None:
    env.store.tokens = env.tokens(access_left=timedelta(minutes=1))
    clients = [env.client() for _ in range(8)]
    barrier, results, errors = threading.Barrier(8), [], []

    def call(client: SchwabClient) -> None:
        barrier.wait()
        try:
            results.append(client.accounts())
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == [] and len(results) == 8
    assert env.state.refresh_count == 1 and env.store.saves == 1


def test_a_dead_refresh_token_means_reconnect(env: Env) -> None:
    env.store.tokens = env.tokens(access_left=timedelta(minutes=2))
    env.state.kill_refresh_tokens()
    with pytest.raises(TokenExpiredError) as caught:
        env.client().accounts()
    assert env.store.tokens.refresh_token not in f"{caught.value} {caught.value.details}"
    assert env.store.saves == 0


def test_a_401_on_a_read_refreshes_once_and_retries(env: Env) -> None:
    env.state.expire_access_tokens()  # the broker revoked it although our clock says it is fine
    client = env.client()
    assert client.accounts()[0].display_number == "…5678"
    assert env.state.refresh_count == 1
    env.state.plan.add(ACCOUNT_NUMBERS, Fault.UNAUTHORIZED, times=2)
    with pytest.raises(AuthenticationError):
        client.accounts()
    assert env.state.refresh_count == 2, "one refresh per call, then give up"


def test_no_token_reaches_the_logs(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.store.tokens = env.tokens(access_left=timedelta(minutes=1))
    env.client().accounts()
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert env.store.tokens.access_token not in output and env.store.tokens.refresh_token not in output
    assert APP_SECRET not in output


# ---------------------------------------------------------------------------- reads


def test_accounts_balances_and_positions(env: Env) -> None:
    env.state.set_position(env.account, "AAPL", long="10", avg="150.00")
    env.state.set_position(env.account, "TSLA", short="5", avg="200.00")
    env.state.set_price("TSLA", "210.00")
    client = env.client()
    assert [(a.account_id, a.display_number) for a in client.accounts()] == [(env.account, "…5678")]
    balance = client.balance(env.account)
    assert (balance.cash, balance.buying_power) == (Decimal(10000), Decimal(20000))
    assert balance.equity == Decimal("10000") + Decimal("1721.50") - Decimal("1050.00")
    positions = {p.symbol: p for p in client.positions(env.account)}
    assert positions["AAPL"].quantity == 10 and positions["AAPL"].average_price == Decimal("150.00")
    assert positions["TSLA"].quantity == -5 and positions["TSLA"].market_value == Decimal("-1050")
    assert all(isinstance(p.market_value, Decimal) for p in positions.values())


def test_quotes_come_from_the_nested_quote_object(env: Env) -> None:
    quotes = env.client().quotes(["msft", "AAPL", "NOPE"])
    assert set(quotes) == {"MSFT", "AAPL"}
    msft = quotes["MSFT"]
    assert (msft.bid, msft.ask, msft.last, msft.mark) == (
        Decimal("190.85"),
        Decimal("190.95"),
        Decimal("190.90"),
        Decimal("190.90"),
    )
    assert isinstance(msft.last, Decimal) and msft.time.tzinfo is not None
    assert abs((datetime.now(UTC) - msft.time).total_seconds()) < 60
    assert quote_problem({"symbol": "X", "lastPrice": 5, "mark": 5}) == "no quote object"


def test_a_zero_negative_or_missing_price_never_makes_a_quote(env: Env) -> None:
    env.state.set_quote("ZERO", lastPrice=0, bidPrice=1, askPrice=1, mark=1)
    env.state.set_quote("NEG", lastPrice=5, bidPrice=-1, askPrice=5, mark=5)
    env.state.set_quote("NOMARK", lastPrice=5, bidPrice=5, askPrice=5)
    quotes = env.client().quotes(["ZERO", "NEG", "NOMARK", "AAPL"])
    assert set(quotes) == {"AAPL"}
    assert all(q.last > 0 and q.bid > 0 and q.mark > 0 for q in quotes.values())


def test_the_price_increment_is_a_cent_at_a_dollar_or_more_and_a_hundredth_below(env: Env) -> None:
    client = env.client()
    assert client.price_increment("MSFT", Decimal("190.85")) == Decimal("0.01")
    assert client.price_increment("MSFT", Decimal("1")) == Decimal("0.01")
    assert client.price_increment("PENY", Decimal("0.9999")) == Decimal("0.0001")


def test_quotes_are_batched(env: Env) -> None:
    symbols = [f"S{i}" for i in range(250)]
    for symbol in symbols[:3]:
        env.state.set_price(symbol, "10.00")
    quotes = env.client().quotes(symbols)
    assert set(quotes) == {"S0", "S1", "S2"}
    assert env.state.requests["GET /marketdata/v1/quotes"] == 2


def test_rate_limited_and_failing_reads_are_retried(env: Env) -> None:
    env.state.plan.add(ACCOUNT_NUMBERS, Fault.RATE_LIMITED, retry_after=3)
    client = env.client()
    assert client.accounts()
    assert env.sleeps == [3.0], "Retry-After honoured"
    env.state.plan.add(ACCOUNT_NUMBERS, Fault.SERVER_ERROR)
    env.state.plan.add(ACCOUNT_NUMBERS, Fault.UNAVAILABLE)
    assert client.accounts()
    env.state.plan.add(ACCOUNT_NUMBERS, Fault.UNAVAILABLE, times=3)
    with pytest.raises(BrokerTemporaryError):
        client.accounts()


def test_a_read_timeout_on_a_read_is_retried(env: Env) -> None:
    env.state.plan.add("GET /marketdata/v1/quotes", Fault.READ_TIMEOUT, seconds=0.8)
    assert set(env.client().quotes(["AAPL"])) == {"AAPL"}
    assert env.state.requests["GET /marketdata/v1/quotes"] == 2


def test_market_hours(env: Env) -> None:
    client = env.client()
    wednesday_morning = datetime(2030, 1, 16, 15, 0, tzinfo=UTC)  # 10:00 in New York
    hours = client.market_hours("AAPL", wednesday_morning)
    assert hours.is_open
    assert hours.opens_at == datetime(2030, 1, 16, 14, 30, tzinfo=UTC)
    assert hours.closes_at == datetime(2030, 1, 16, 21, 0, tzinfo=UTC)
    assert not client.market_hours("AAPL", datetime(2030, 1, 16, 22, 0, tzinfo=UTC)).is_open
    saturday = client.market_hours("AAPL", datetime(2030, 1, 19, 15, 0, tzinfo=UTC))
    assert (saturday.is_open, saturday.opens_at, saturday.closes_at) == (False, None, None)


# ---------------------------------------------------------------------------- placing orders


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            order(),
            {"orderType": "LIMIT", "price": "190.90", "duration": "DAY"},
        ),
        (
            order(order_type=OrderType.MARKET, time_in_force=TimeInForce.IOC),
            {"orderType": "MARKET", "duration": "IMMEDIATE_OR_CANCEL"},
        ),
        (
            order(OrderSide.SELL, OrderType.STOP, stop_price=Decimal("180"), time_in_force=TimeInForce.GTC),
            {"orderType": "STOP", "stopPrice": "180.00", "duration": "GOOD_TILL_CANCEL"},
        ),
        (
            order(
                OrderSide.SELL,
                OrderType.STOP_LIMIT,
                stop_price=Decimal("180.5"),
                limit_price=Decimal("180.25"),
                time_in_force=TimeInForce.FOK,
            ),
            {"orderType": "STOP_LIMIT", "stopPrice": "180.50", "price": "180.25", "duration": "FILL_OR_KILL"},
        ),
        (
            order(OrderSide.SELL, OrderType.TRAILING_STOP, trail_offset=Decimal("2.5")),
            {
                "orderType": "TRAILING_STOP",
                "stopPriceLinkBasis": "LAST",
                "stopPriceLinkType": "VALUE",
                "stopPriceOffset": "2.50",
            },
        ),
        (
            order(OrderSide.SELL, OrderType.TRAILING_STOP, trail_percent=Decimal("2.50")),
            {
                "orderType": "TRAILING_STOP",
                "stopPriceLinkBasis": "LAST",
                "stopPriceLinkType": "PERCENT",
                "stopPriceOffset": "2.5",
            },
        ),
        (
            order(symbol="PENY", quantity="100", limit_price=Decimal("0.1234")),
            {"orderType": "LIMIT", "price": "0.1234"},
        ),
    ],
)
def test_orders_are_sent_in_the_documented_shape(env: Env, request_: OrderRequest, expected: dict[str, Any]) -> None:
    env.state.set_position(env.account, "MSFT", long="100", avg="150.00")
    placed = env.client().place_order(env.account, request_)
    sent = env.state.received_payloads[-1]
    assert {key: sent[key] for key in expected} == expected
    assert sent["session"] == "NORMAL" and sent["orderStrategyType"] == "SINGLE"
    leg = sent["orderLegCollection"][0]
    assert leg == {
        "instruction": request_.side.value.upper(),
        "quantity": int(request_.quantity),
        "instrument": {"symbol": request_.symbol, "assetType": "EQUITY"},
    }
    assert placed.status == OrderStatus.SUBMITTED and placed.broker_order_id in env.state.orders
    assert env.writes == ["write"], "every write passes the throttle"


def test_short_and_cover_instructions(env: Env) -> None:
    client = env.client()
    client.place_order(env.account, order(OrderSide.SELL_SHORT, OrderType.MARKET, quantity="5"))
    client.place_order(env.account, order(OrderSide.BUY_TO_COVER, OrderType.MARKET, quantity="5"))
    sent = [p["orderLegCollection"][0]["instruction"] for p in env.state.received_payloads]
    assert sent == ["SELL_SHORT", "BUY_TO_COVER"]


@pytest.mark.parametrize(
    "request_",
    [
        order(limit_price=Decimal("190.905")),
        order(quantity="1.5"),
        order(order_type=OrderType.STOP),
        order(limit_price=Decimal("0")),
        order(OrderSide.SELL, OrderType.TRAILING_STOP, trail_percent=Decimal(100)),
        order(OrderSide.SELL, OrderType.TRAILING_STOP, trail_percent=Decimal("1.234")),
        order(OrderSide.SELL, OrderType.TRAILING_STOP, trail_percent=Decimal(1), trail_offset=Decimal(1)),
    ],
)
def test_orders_schwab_cannot_take_are_refused_before_sending(env: Env, request_: OrderRequest) -> None:
    with pytest.raises(InvalidOrderError):
        env.client().place_order(env.account, request_)
    assert env.state.orders_received == 0 and env.writes == []


@pytest.mark.parametrize(
    ("payload_change", "words"),
    [
        ({"price": 190.9}, "price must be a decimal string"),
        ({"orderType": "LIMITED"}, "Invalid or missing orderType"),
        ({"orderLegCollection": None}, "orderLegCollection"),
        ({"surprise": 1}, "Unknown order fields"),
    ],
)
def test_the_fake_refuses_malformed_orders(env: Env, payload_change: dict[str, Any], words: str) -> None:
    answer = post_raw_order(env, {"orderType": "LIMIT", "price": "190.90"} | payload_change)
    assert answer.status_code == 400 and words in answer.json()["message"]
    assert env.state.orders == {}


TRAILING = {"orderType": "TRAILING_STOP", "stopPriceLinkBasis": "LAST", "stopPriceLinkType": "PERCENT"}


@pytest.mark.parametrize(
    ("trail", "words"),
    [
        ({"stopPriceOffset": "150"}, "percent string above 0 and below 100"),
        ({"stopPriceOffset": "2.555"}, "2 decimals at most"),
        ({"stopPriceOffset": 5}, "percent string"),
        ({"stopPriceOffset": "0"}, "must be above 0"),
        ({"stopPriceOffset": None}, "take exactly"),
        ({"stopPriceOffset": "5", "stopPriceLinkType": "TICK"}, "VALUE or PERCENT"),
        ({"stopPriceOffset": "5", "stopPriceLinkBasis": "SOMETIMES"}, "Invalid stopPriceLinkBasis"),
        ({"stopPriceOffset": "2.5", "stopPriceLinkType": "VALUE"}, "stopPriceOffset must be a decimal string"),
        ({"stopPriceOffset": "5", "stopPrice": "180.00"}, "take exactly"),
    ],
)
def test_the_fake_refuses_malformed_trailing_stops(env: Env, trail: dict[str, Any], words: str) -> None:
    answer = post_raw_order(env, TRAILING | trail, instruction="SELL")
    assert answer.status_code == 400 and words in answer.json()["message"]
    assert env.state.orders == {}


@pytest.mark.parametrize(
    ("trail", "holds_at", "fills_at"),
    [
        ({"trail_offset": Decimal("2.50")}, "207.51", "207.50"),  # 210.00 - 2.50
        ({"trail_percent": Decimal(2)}, "205.81", "205.80"),  # 210.00 * (1 - 2/100)
    ],
)
def test_the_fake_trails_the_last_price_by_value_or_percent(
    env: Env, trail: dict[str, Decimal], holds_at: str, fills_at: str
) -> None:
    env.state.set_position(env.account, "MSFT", long="10", avg="150.00")
    env.state.set_price("MSFT", "200.00")
    client = env.client()
    placed = client.place_order(env.account, order(OrderSide.SELL, OrderType.TRAILING_STOP, **trail))
    for last in ("205.00", "210.00", "208.00", holds_at):
        env.state.set_price("MSFT", last)
        assert client.get_order(env.account, placed.broker_order_id).status == OrderStatus.WORKING
    env.state.set_price("MSFT", fills_at)
    filled = client.get_order(env.account, placed.broker_order_id)
    assert (filled.status, filled.filled_quantity, filled.average_fill_price) == (
        OrderStatus.FILLED,
        Decimal(10),
        Decimal(fills_at),
    )


def post_raw_order(env: Env, fields: dict[str, Any], instruction: str = "BUY") -> requests.Response:
    """POST an order body as given (``None`` drops a field), past the client's own checks."""
    payload = {
        "session": "NORMAL",
        "duration": "DAY",
        "orderStrategyType": "SINGLE",
        "orderLegCollection": [
            {"instruction": instruction, "quantity": 1, "instrument": {"symbol": "MSFT", "assetType": "EQUITY"}}
        ],
    }
    payload = {k: v for k, v in (payload | fields).items() if v is not None}
    return requests.post(
        f"{env.server.base_url}/trader/v1/accounts/{env.account}/orders",
        json=payload,
        headers={"Authorization": f"Bearer {env.store.tokens.access_token}"},
        timeout=2,
    )


@pytest.mark.parametrize("fault", [Fault.READ_TIMEOUT, Fault.DROP_AFTER_ACCEPT, Fault.NO_LOCATION])
def test_an_unseen_outcome_is_unknown_and_never_resent(env: Env, fault: Fault) -> None:
    env.state.plan.add(PLACE, fault, seconds=1.0)
    with pytest.raises(UnknownOrderOutcomeError) as caught:
        env.client().place_order(env.account, order())
    assert caught.value.details["client_order_id"] == "coid-1"
    assert env.state.orders_received == 1, "sent exactly once"
    assert len(env.state.orders) == 1, "and the broker has it: reconcile, do not resend"


def test_a_server_error_on_place_is_unknown_too(env: Env) -> None:
    env.state.plan.add(PLACE, Fault.SERVER_ERROR)
    with pytest.raises(UnknownOrderOutcomeError):
        env.client().place_order(env.account, order())
    assert env.state.requests[PLACE] == 1


def test_a_401_on_a_write_refreshes_and_is_a_safe_temporary_error(env: Env) -> None:
    env.state.expire_access_tokens()
    client = env.client()
    with pytest.raises(BrokerTemporaryError) as caught:
        client.place_order(env.account, order())
    assert not isinstance(caught.value, UnknownOrderOutcomeError)
    assert env.state.orders_received == 0 and env.state.refresh_count == 1
    assert client.place_order(env.account, order()).status == OrderStatus.SUBMITTED


@pytest.mark.parametrize(
    ("setup", "request_", "reason", "words"),
    [
        (
            "position",
            order(OrderSide.SELL, OrderType.STOP, stop_price=Decimal("195")),
            "stop_price_wrong_side",
            "wrong side of the market",
        ),
        ("", order(OrderSide.SELL), "exceeds_position", "more shares than the account holds"),
        ("closed", order(), "market_closed", "market is closed"),
        ("", order(quantity="1000"), "insufficient_buying_power", "buying power"),
    ],
)
def test_rejections_read_as_words(env: Env, setup: str, request_: OrderRequest, reason: str, words: str) -> None:
    if setup == "position":
        env.state.set_position(env.account, "MSFT", long="100", avg="150.00")
    env.state.market_open = setup != "closed"
    with pytest.raises(OrderRejectedError) as caught:
        env.client().place_order(env.account, request_)
    assert caught.value.details["reason"] == reason
    assert words in caught.value.message
    assert env.state.orders == {}


def test_an_unrecognised_rejection_keeps_the_brokers_words(env: Env) -> None:
    env.state.plan.add(PLACE, Fault.REJECT, reason="Symbol is halted for news")
    with pytest.raises(OrderRejectedError) as caught:
        env.client().place_order(env.account, order())
    assert caught.value.message == "Schwab rejected the order: Symbol is halted for news."


# ---------------------------------------------------------------------------- order lifecycle


def test_partial_fills_and_the_average_price(env: Env) -> None:
    env.state.plan.add(PLACE, Fault.PARTIAL_FILL, quantity=4, price="190.00")
    client = env.client()
    placed = client.place_order(env.account, order())
    partial = client.get_order(env.account, placed.broker_order_id)
    assert partial.status == OrderStatus.PARTIALLY_FILLED
    assert (partial.filled_quantity, partial.remaining_quantity) == (4, 6)
    assert partial.average_fill_price == Decimal("190.00")
    env.state.fill(placed.broker_order_id, 6, "190.10")
    done = client.get_order(env.account, placed.broker_order_id)
    assert done.status == OrderStatus.FILLED and done.closed_at is not None
    assert done.average_fill_price == Decimal("190.06")
    assert done.fills[0].fill_id == partial.fills[0].fill_id, "fill ids are stable across polls"
    assert [f.fill_id for f in client.fills(env.account, placed.broker_order_id)] == [f.fill_id for f in done.fills]
    assert len({f.fill_id for f in done.fills}) == 2 and done.client_order_id is None


@pytest.mark.parametrize(
    ("schwab", "ours"),
    [
        ("FILLED", OrderStatus.FILLED),
        ("CANCELED", OrderStatus.CANCELLED),
        ("REJECTED", OrderStatus.REJECTED),
        ("EXPIRED", OrderStatus.EXPIRED),
        ("REPLACED", OrderStatus.REPLACED),
        ("PENDING_CANCEL", OrderStatus.CANCEL_PENDING),
        ("QUEUED", OrderStatus.WORKING),
        ("AWAITING_PARENT_ORDER", OrderStatus.WORKING),
        ("PENDING_ACTIVATION", OrderStatus.WORKING),
        ("UNKNOWN", OrderStatus.UNKNOWN),
    ],
)
def test_statuses_map_to_ours(env: Env, schwab: str, ours: OrderStatus) -> None:
    client = env.client()
    placed = client.place_order(env.account, order())
    env.state.set_status(placed.broker_order_id, schwab)
    assert client.get_order(env.account, placed.broker_order_id).status == ours


def test_cancel_and_a_refused_cancel(env: Env) -> None:
    client = env.client()
    placed = client.place_order(env.account, order())
    client.cancel_order(env.account, placed.broker_order_id)
    assert client.get_order(env.account, placed.broker_order_id).status == OrderStatus.CANCELLED
    with pytest.raises(OrderCancellationError) as caught:
        client.cancel_order(env.account, placed.broker_order_id)
    assert "not cancelable" in caught.value.message
    assert env.writes == ["write"] * 3


def test_replace_answers_a_new_id_and_the_old_one_is_replaced(env: Env) -> None:
    client = env.client()
    placed = client.place_order(env.account, order())
    replaced = client.replace_order(env.account, placed.broker_order_id, order(limit_price=Decimal("189.50")))
    assert replaced.broker_order_id != placed.broker_order_id
    assert client.get_order(env.account, placed.broker_order_id).status == OrderStatus.REPLACED
    new = client.get_order(env.account, replaced.broker_order_id)
    assert (new.status, new.limit_price) == (OrderStatus.WORKING, Decimal("189.50"))
    env.state.plan.add(f"PUT {ORDER_RULE}", Fault.NO_LOCATION)
    with pytest.raises(UnknownOrderOutcomeError):
        client.replace_order(env.account, replaced.broker_order_id, order(limit_price=Decimal("189.00")))
    assert env.state.orders_received == 3


def test_list_orders_in_a_window_and_by_status(env: Env) -> None:
    client = env.client()
    first = client.place_order(env.account, order())
    client.place_order(env.account, order(quantity="2"))
    env.state.fill(first.broker_order_id, 10, "190.90")
    now = datetime.now(UTC)
    since, until = now - timedelta(hours=1), now + timedelta(hours=1)
    everything = client.list_orders(env.account, since, until)
    assert len(everything) == 2 and all(o.client_order_id is None for o in everything)
    filled = client.list_orders(env.account, since, until, OrderStatus.FILLED)
    assert [o.broker_order_id for o in filled] == [first.broker_order_id]
    assert client.list_orders(env.account, now - timedelta(days=3), now - timedelta(days=2)) == []
    with pytest.raises(InvalidInputError):
        client.list_orders(env.account, now - timedelta(days=61), now)
    assert env.state.requests[f"GET {ORDERS_RULE}"] == 3, "the long window never reached the broker"


def test_transactions_after_a_fill(env: Env) -> None:
    client = env.client()
    placed = client.place_order(env.account, order(quantity="3"))
    env.state.fill(placed.broker_order_id, 3, "190.50")
    now = datetime.now(UTC)
    [trade] = client.transactions(env.account, now - timedelta(days=1), now + timedelta(minutes=1))
    assert (trade.kind, trade.symbol, trade.amount) == ("TRADE", "MSFT", Decimal("-571.50"))
    assert trade.time.tzinfo is not None


# ---------------------------------------------------------------------------- throttle and capabilities


def test_the_write_throttle_allows_n_per_minute_then_waits() -> None:
    clock = [1000.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    throttle = WriteThrottle(3, clock=lambda: clock[0], sleep=sleep)
    for step in (0.0, 10.0, 10.0):
        clock[0] += step
        throttle()
    assert waits == []
    throttle()
    assert waits == [40.0], "the 4th write waits until the 1st leaves the 60-second window"
    clock[0] += 5
    throttle()
    assert waits == [40.0, 5.0]


def test_reads_do_not_use_the_write_throttle(env: Env) -> None:
    client = env.client()
    client.accounts()
    client.quotes(["AAPL"])
    client.balance(env.account)
    assert env.writes == []


def test_capabilities() -> None:
    caps = SchwabClient.capabilities
    assert caps.native_stop and caps.stop_limit and caps.trailing_stop and caps.bracket and caps.replace
    assert not caps.fractional_quantity and not caps.always_open
    assert caps.order_writes_per_minute == 120 and caps.max_symbols_per_quote == 200


def test_listed_orders_we_do_not_trade_are_skipped_not_fatal(env: Env) -> None:
    client = env.client()
    kept = client.place_order(env.account, order())
    odd = client.place_order(env.account, order(quantity="1"))
    env.state.orders[odd.broker_order_id]["orderLegCollection"][0]["instruction"] = "BUY_TO_OPEN"
    now = datetime.now(UTC)
    listed = client.list_orders(env.account, now - timedelta(hours=1), now + timedelta(hours=1))
    assert [o.broker_order_id for o in listed] == [kept.broker_order_id]


def test_price_history_bars_are_exact_decimals_oldest_first_within_the_window(env: Env) -> None:
    start = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)
    env.state.add_candle("AAPL", start + timedelta(minutes=5), ("172.20", "172.60", "172.00", "172.55"))
    env.state.add_candle("AAPL", start, ("172.10", "172.50", "171.90", "172.25"))
    env.state.add_candle("AAPL", start + timedelta(hours=2), ("1", "1", "1", "1"))
    bars = env.client().candles("aapl", CandleInterval.FIVE_MINUTES, start, start + timedelta(hours=1))
    assert [bar.time for bar in bars] == [start, start + timedelta(minutes=5)]
    assert (bars[0].open, bars[0].high, bars[0].low, bars[0].close) == (
        Decimal("172.10"),
        Decimal("172.50"),
        Decimal("171.90"),
        Decimal("172.25"),
    )
    assert isinstance(bars[1].close, Decimal) and bars[1].volume == 100
    daily = env.client().candles("MSFT", CandleInterval.ONE_DAY, start - timedelta(days=30), start)
    assert daily == [] and env.state.requests["GET /marketdata/v1/pricehistory"] == 2
