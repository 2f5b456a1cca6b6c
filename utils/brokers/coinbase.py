"""Coinbase Advanced Trade client: CDP-key JWT auth per request, a per-user request budget.

Every call goes through ``BrokerHttp`` (reads retried, writes classified). Each HTTP attempt,
retries included, gets a FRESH ES256 JWT and takes one token from the request budget: both happen
in ``CdpJwtAuth``, which requests calls for every prepared request. Reference:
https://docs.cdp.coinbase.com/coinbase-app/authentication-authorization/api-key-authentication

Account model (documented choice): ``accounts()`` lists Coinbase's per-currency wallets.
``balance``/``positions`` take either a wallet uuid or a currency code ("USD") and treat that
wallet's currency as the cash currency of one portfolio: cash and buying power are its available
balance, positions are the other non-empty wallets quoted in that currency, and equity is cash +
hold + the positions' market value (holdings without a quote in that currency count as zero).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from utils.brokers import coinbase_payloads as cp
from utils.brokers.base import (
    Balance,
    Broker,
    BrokerAccount,
    BrokerOrder,
    BrokerPosition,
    Candle,
    CandleInterval,
    Capabilities,
    Fill,
    MarketHours,
    OrderRequest,
    Quote,
    Transaction,
)
from utils.brokers.http import BrokerHttp, HttpPolicy
from utils.enums import OrderStatus, OrderType, TimeInForce
from utils.exceptions import (
    ArbionError,
    AuthenticationError,
    BrokerAPIError,
    DataValidationError,
    InvalidInputError,
    InvalidOrderError,
    NotFoundError,
    OrderCancellationError,
    OrderRejectedError,
    SymbolNotFoundError,
    UnknownOrderOutcomeError,
)
from utils.observability import get_logger

log = get_logger(__name__)
DEFAULT_BASE_URL = "https://api.coinbase.com"
API_PREFIX = "/api/v3/brokerage"
JWT_LIFETIME_SECONDS = 120
DEFAULT_REQUESTS_PER_SECOND = 30.0
PAGE_LIMIT = 250
MAX_PAGES = 200
KEY_NAME = re.compile(r"^organizations/[^/\s]+/apiKeys/[^/\s]+$")
CAPABILITIES = Capabilities(
    native_stop=False,
    stop_limit=True,
    trailing_stop=False,
    bracket=True,
    replace=True,
    fractional_quantity=True,
    always_open=True,
    max_symbols_per_quote=100,
    order_writes_per_minute=1800,
    replace_keeps_id=True,
)


def load_signing_key(private_key_pem: str) -> ec.EllipticCurvePrivateKey:
    """The EC P-256 private key of a CDP API key; anything else is refused without echoing it."""
    try:
        key = serialization.load_pem_private_key(private_key_pem.strip().encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError("The Coinbase private key is not a readable, unencrypted PEM key.") from exc
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raise InvalidInputError(
            "Ed25519 Coinbase API keys are not supported yet; create a CDP key with the ECDSA (ES256) algorithm."
        )
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidInputError("The Coinbase private key must be an EC P-256 (ECDSA/ES256) key.")
    return key


def build_jwt(
    key_name: str, key: ec.EllipticCurvePrivateKey, method: str, host: str, path: str, now: float | None = None
) -> str:
    """A one-request ES256 JWT: ``uri`` is "METHOD host/path" (no scheme, no query), valid 120 s."""
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": key_name,
        "iss": "cdp",
        "nbf": issued,
        "exp": issued + JWT_LIFETIME_SECONDS,
        "uri": f"{method.upper()} {host}{path}",
    }
    headers = {"kid": key_name, "nonce": secrets.token_hex(16)}
    return jwt.encode(claims, key, algorithm="ES256", headers=headers)


class RequestBudget:
    """An in-process token bucket: ``rate`` requests per second, bursts up to ``burst``.

    Coinbase allows 30 private requests/s per user; beyond it answers 429. A caller that finds
    the bucket empty reserves the next token and sleeps until it is due (thread-safe).
    """

    def __init__(
        self,
        rate: float = DEFAULT_REQUESTS_PER_SECOND,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate <= 0:
            raise InvalidInputError("The request budget must be positive.")
        self.rate = rate
        self.burst = burst if burst is not None else rate
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until it is due; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


_BUDGETS: dict[str, RequestBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def shared_budget(key_name: str) -> RequestBudget:
    """The process-wide budget of one API key (one Coinbase user), created at 30 requests/s."""
    with _BUDGETS_LOCK:
        return _BUDGETS.setdefault(key_name, RequestBudget())


class CdpJwtAuth(requests.auth.AuthBase):
    """Signs every HTTP attempt with a fresh JWT for its exact method, host and path."""

    def __init__(self, key_name: str, key: ec.EllipticCurvePrivateKey, budget: RequestBudget):
        self.key_name = key_name
        self._key = key
        self.budget = budget

    def __call__(self, prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        """Wait for the budget, then set ``Authorization: Bearer <JWT>``."""
        self.budget.acquire()
        parts = urlsplit(prepared.url or "")
        token = build_jwt(self.key_name, self._key, prepared.method or "GET", parts.netloc, parts.path)
        prepared.headers["Authorization"] = f"Bearer {token}"
        return prepared

    def __repr__(self) -> str:
        return f"CdpJwtAuth(key_name={self.key_name!r})"


class CoinbaseClient(Broker):
    """Coinbase Advanced Trade behind the Broker interface (network only, no database)."""

    capabilities = CAPABILITIES

    def __init__(
        self,
        key_name: str,
        private_key_pem: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        policy: HttpPolicy | None = None,
        budget: RequestBudget | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not KEY_NAME.match(key_name or ""):
            raise InvalidInputError("The Coinbase key name must look like organizations/{org}/apiKeys/{id}.")
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise InvalidInputError("The Coinbase base URL needs a scheme, e.g. https://api.coinbase.com.")
        self.key_name = key_name
        self.http = BrokerHttp("coinbase", base_url, policy=policy, sleep=sleep)
        self.auth = CdpJwtAuth(key_name, load_signing_key(private_key_pem), budget or shared_budget(key_name))
        self._products: dict[str, cp.ProductRules] = {}

    # ------------------------------------------------------------------ accounts and market data

    def accounts(self) -> list[BrokerAccount]:
        """Every wallet: account_id = uuid, display_number = currency, description = name."""
        return [
            BrokerAccount(
                account_id=str(w["uuid"]), display_number=str(w.get("currency", "")), description=w.get("name", "")
            )
            for w in self._wallets()
        ]

    def balance(self, account_id: str) -> Balance:
        """Cash/buying power = the wallet's available balance; equity adds hold and positions' value."""
        wallets = self._wallets()
        cash = cp.resolve_wallet(wallets, account_id)
        currency = str(cash["currency"])
        available, hold = cp.wallet_amount(cash, "available_balance"), cp.wallet_amount(cash, "hold")
        value = sum((p.market_value for p in self._positions_in(wallets, currency)), Decimal(0))
        return Balance(currency=currency, cash=available, buying_power=available, equity=available + hold + value)

    def positions(self, account_id: str) -> list[BrokerPosition]:
        """Non-empty wallets other than the cash currency; average_price is 0 (Coinbase does not report it)."""
        wallets = self._wallets()
        return self._positions_in(wallets, str(cp.resolve_wallet(wallets, account_id)["currency"]))

    def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """Best bid/ask for many products per call; mark and last are the midpoint."""
        wanted, found = set(symbols), {}
        now = datetime.now(UTC)
        for batch in cp.batches(symbols, self.capabilities.max_symbols_per_quote):
            answer = self._get("/best_bid_ask", {"product_ids": batch})
            for book in answer.get("pricebooks") or []:
                quote_ = cp.parse_pricebook(book, now)
                if quote_ is not None and quote_.symbol in wanted:
                    found[quote_.symbol] = quote_
        return found

    def product_rules(self, product_id: str) -> cp.ProductRules:
        """A product's size and price increments, fetched once per client."""
        if product_id not in self._products:
            answer = self._get(f"/products/{quote(product_id, safe='')}", not_found=SymbolNotFoundError)
            rules = cp.product_rules(answer)
            if rules.base_increment <= 0 or rules.quote_increment <= 0:
                raise DataValidationError(
                    "Coinbase sent a product without increments.", details={"product": product_id}
                )
            self._products[product_id] = rules
        return self._products[product_id]

    def price_increment(self, symbol: str, price: Decimal) -> Decimal:
        """The product's quote_increment (GET /products/{id}, fetched once per client)."""
        return self.product_rules(symbol).quote_increment

    def candles(self, symbol: str, interval: CandleInterval, start: datetime, end: datetime) -> list[Candle]:
        """Bars from GET /products/{id}/candles, one call: the latest 350 at most (Coinbase sends newest first)."""
        path = f"/products/{quote(symbol, safe='')}/candles"
        answer = self._get(path, cp.candle_params(interval, start, end), not_found=SymbolNotFoundError)
        bars = [cp.parse_candle(row) for row in answer.get("candles") or []]
        return sorted((bar for bar in bars if start <= bar.time < end), key=lambda bar: bar.time)

    def market_hours(self, symbol: str, at: datetime) -> MarketHours:
        """Crypto trades around the clock: open, with the UTC day as the session."""
        opens_at, closes_at = cp.day_bounds(at)
        return MarketHours(is_open=True, opens_at=opens_at, closes_at=closes_at)

    # ------------------------------------------------------------------ orders

    def place_order(self, account_id: str, request: OrderRequest) -> BrokerOrder:
        """POST /orders; unsupported types are refused before any call. The answer is SUBMITTED."""
        cp.check_native(request)
        if not request.client_order_id:
            raise InvalidOrderError("A client order id is required: it is Coinbase's duplicate guard.")
        rules = self.product_rules(request.symbol)
        body = {
            "client_order_id": request.client_order_id,
            "product_id": request.symbol,
            "side": cp.coinbase_side(request.side),
            "order_configuration": cp.order_configuration(request, rules, datetime.now(UTC)),
        }
        # A 401 retry resends this same body: Coinbase creates at most one order per client_order_id.
        answer = self._post("/orders", body, client_order_id=request.client_order_id)
        return cp.accepted_order(request, body, answer)

    def get_order(self, account_id: str, broker_order_id: str) -> BrokerOrder:
        """GET /orders/historical/{id}, with its fills when anything has filled."""
        answer = self._get(f"/orders/historical/{quote(broker_order_id, safe='')}", not_found=NotFoundError)
        order = answer.get("order") or {}
        if not order.get("order_id"):
            raise DataValidationError("Coinbase answered an order lookup without an order.")
        filled = cp.decimal_or_zero(order.get("filled_size")) > 0
        fills = tuple(self.fills(account_id, broker_order_id)) if filled else ()
        return cp.parse_order(order, fills)

    def find_by_client_order_id(
        self, client_order_id: str, *, product_id: str | None = None, since: datetime | None = None
    ) -> BrokerOrder | None:
        """Reconcile an UNKNOWN outcome: the order with this client_order_id, or None if Coinbase has none."""
        params: dict[str, Any] = {"limit": PAGE_LIMIT}
        if product_id:
            params["product_ids"] = [product_id]
        if since is not None:
            params["start_date"] = cp.rfc3339(since)
        for order in self._pages("/orders/historical/batch", params, "orders"):
            if order.get("client_order_id") == client_order_id:
                return self.get_order("", str(order["order_id"]))
        return None

    def cancel_order(self, account_id: str, broker_order_id: str) -> None:
        """POST /orders/batch_cancel for one id; OrderCancellationError with Coinbase's reason."""
        answer = self._post("/orders/batch_cancel", {"order_ids": [broker_order_id]})
        results = [r for r in answer.get("results") or [] if r.get("order_id") in (broker_order_id, None, "")]
        if not results:
            raise OrderCancellationError(
                "Coinbase did not answer for this order.", details={"order_id": broker_order_id}
            )
        if not results[0].get("success"):
            code = str(results[0].get("failure_reason") or "")
            raise OrderCancellationError(cp.readable_reason(code), details={"reason_code": code})

    def replace_order(self, account_id: str, broker_order_id: str, request: OrderRequest) -> BrokerOrder:
        """POST /orders/edit (GTC limit / stop-limit: size and limit price only).

        Coinbase edits in place: the answer keeps the SAME broker order id (no new id, no REPLACED
        order). The stop price of a stop-limit cannot be edited. The order is re-read after the edit.
        """
        editable = request.order_type == OrderType.STOP_LIMIT or (
            request.order_type == OrderType.LIMIT and request.time_in_force == TimeInForce.GTC
        )
        if not editable:
            raise InvalidOrderError("Coinbase can only edit good-till-cancelled limit and stop-limit orders.")
        rules = self.product_rules(request.symbol)
        body = {
            "order_id": broker_order_id,
            "size": cp.sized(request.quantity, rules),
            "price": cp.priced(request.limit_price, rules, "limit"),
        }
        answer = self._post("/orders/edit", body)
        if not answer.get("success"):
            errors = answer.get("errors") or [{}]
            code = str(errors[0].get("edit_failure_reason") or errors[0].get("preview_failure_reason") or "")
            raise OrderRejectedError(cp.readable_reason(code), details={"reason_code": code})
        return self.get_order(account_id, broker_order_id)

    def list_orders(
        self, account_id: str, since: datetime, until: datetime, status: OrderStatus | None = None
    ) -> list[BrokerOrder]:
        """Orders created in [since, until]; WORKING includes partially filled ones. No fills attached."""
        params: dict[str, Any] = {"start_date": cp.rfc3339(since), "end_date": cp.rfc3339(until), "limit": PAGE_LIMIT}
        if status is not None:
            params["order_status"] = list(cp.STATUS_QUERY.get(status, ()))
            if not params["order_status"]:
                return []
        orders = [cp.parse_order(raw) for raw in self._pages("/orders/historical/batch", params, "orders")]
        if status is None:
            return orders
        accepted = {status, OrderStatus.PARTIALLY_FILLED} if status == OrderStatus.WORKING else {status}
        return [order for order in orders if order.status in accepted]

    def fills(self, account_id: str, broker_order_id: str) -> list[Fill]:
        """GET /orders/historical/fills for one order (fill_id = entry_id, else trade_id)."""
        params = {"order_ids": [broker_order_id], "limit": PAGE_LIMIT}
        return [cp.parse_fill(raw) for raw in self._pages("/orders/historical/fills", params, "fills")]

    def transactions(self, account_id: str, since: datetime, until: datetime) -> list[Transaction]:
        """Trades only, built from fills in the window (deposits/withdrawals live in another Coinbase API)."""
        params = {
            "start_sequence_timestamp": cp.rfc3339(since),
            "end_sequence_timestamp": cp.rfc3339(until),
            "limit": PAGE_LIMIT,
        }
        return [cp.fill_transaction(raw) for raw in self._pages("/orders/historical/fills", params, "fills")]

    # ------------------------------------------------------------------ HTTP plumbing

    def _wallets(self) -> list[dict[str, Any]]:
        return list(self._pages("/accounts", {"limit": PAGE_LIMIT}, "accounts"))

    def _positions_in(self, wallets: list[dict[str, Any]], cash_currency: str) -> list[BrokerPosition]:
        held = {
            f"{w['currency']}-{cash_currency}": cp.wallet_amount(w, "available_balance") + cp.wallet_amount(w, "hold")
            for w in wallets
            if w.get("currency") != cash_currency
        }
        held = {symbol: quantity for symbol, quantity in held.items() if quantity > 0}
        marks = self.quotes(list(held)) if held else {}
        return [
            BrokerPosition(
                symbol=symbol,
                quantity=quantity,
                average_price=Decimal(0),
                market_value=quantity * marks[symbol].mark if symbol in marks else Decimal(0),
            )
            for symbol, quantity in held.items()
        ]

    def _pages(self, path: str, params: Mapping[str, Any], key: str) -> Iterator[dict[str, Any]]:
        """Items of every page, following ``cursor`` while ``has_next`` (fills only send a cursor)."""
        cursor = ""
        for _ in range(MAX_PAGES):
            page = self._get(path, {**params, "cursor": cursor} if cursor else dict(params))
            yield from page.get(key) or []
            previous, cursor = cursor, str(page.get("cursor") or "")
            if page.get("has_next") is False or not cursor or cursor == previous:
                return
        log.warning("coinbase.pagination_truncated", path=path, pages=MAX_PAGES)

    def _get(
        self, path: str, params: Mapping[str, Any] | None = None, not_found: type[ArbionError] = BrokerAPIError
    ) -> dict[str, Any]:
        url_path = f"{API_PREFIX}{path}"
        response = self._once_more_on_401(lambda: self.http.read("GET", url_path, params=params, auth=self.auth))
        return _decode(response, not_found=not_found)

    def _post(self, path: str, body: dict[str, Any], client_order_id: str | None = None) -> dict[str, Any]:
        url_path = f"{API_PREFIX}{path}"
        try:
            response = self._once_more_on_401(lambda: self.http.write("POST", url_path, json=body, auth=self.auth))
        except UnknownOrderOutcomeError as exc:
            exc.details.update({"client_order_id": client_order_id, "path": path})
            raise
        return _decode(response, client_error=OrderRejectedError)

    def _once_more_on_401(self, send: Callable[[], requests.Response]) -> requests.Response:
        # Coinbase intermittently answers 401 to valid JWTs; one retry with a fresh JWT is the
        # documented workaround (BROKER_APIS.md). The auth hook signs every attempt anew.
        try:
            return send()
        except AuthenticationError:
            log.warning("coinbase.auth_retry", key_name=self.key_name)
        try:
            return send()
        except AuthenticationError as exc:
            raise AuthenticationError(
                "Coinbase refused the API key twice (401); check the key and its permissions.",
                details={"provider": "coinbase"},
            ) from exc


def _decode(
    response: requests.Response,
    *,
    not_found: type[ArbionError] = BrokerAPIError,
    client_error: type[ArbionError] = BrokerAPIError,
) -> dict[str, Any]:
    """The JSON body as a dict (floats as Decimal); a 4xx becomes a typed error with Coinbase's reason."""
    try:
        body = json.loads(response.text or "{}", parse_float=Decimal)
    except ValueError as exc:
        raise DataValidationError("Coinbase sent a body that is not JSON.", details={"provider": "coinbase"}) from exc
    if response.status_code < 400:
        if not isinstance(body, dict):
            raise DataValidationError("Coinbase sent an unexpected body.", details={"provider": "coinbase"})
        return body
    payload = body if isinstance(body, dict) else {}
    code = str(payload.get("error") or "")
    details = {"provider": "coinbase", "status": response.status_code, "reason_code": code}
    reason = cp.readable_reason(code, str(payload.get("message") or ""))
    if response.status_code == 403:
        raise AuthenticationError(f"The Coinbase API key may not do this: {reason}", details=details)
    if response.status_code == 404:
        raise not_found(f"Coinbase: {reason}", details=details)
    raise client_error(f"Coinbase refused the request: {reason}", details=details)
