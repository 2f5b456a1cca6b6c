"""A stateful fake of the Schwab Trader API: OAuth with PKCE, accounts, quotes, an order book.

``create_schwab_fake(client_id, client_secret)`` returns ``(app, state)``. The app serves the
paths in docs/brokers.md on whatever server runs it (tests use FakeServer, a sandbox
CLI may run it too); ``state`` lets tests drive it: set prices, fill orders, expire tokens, kill
refresh tokens, queue faults on ``state.plan`` and count what the fake received. ``latency``
(seconds, ``state.latency``, default 0) holds every answer that long, as a distant broker would
(benchmarks measure the platform's overhead against it).

Route-specific faults (queued like the generic ones, e.g.
``state.plan.add("POST /trader/v1/accounts/<account_hash>/orders", Fault.NO_LOCATION)``):
NO_LOCATION (201 without Location, the order still exists), REJECT (400 with ``reason``),
PARTIAL_FILL (the new order gets one execution of ``quantity`` at ``price``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import Flask, Response, jsonify, redirect, request

from tests.fakes.server import Fault, FaultPlan, current_fault, install_faults

ORDERS_RULE = "/trader/v1/accounts/<account_hash>/orders"
ORDER_RULE = "/trader/v1/accounts/<account_hash>/orders/<order_id>"
TERMINAL = {"FILLED", "CANCELED", "REJECTED", "EXPIRED", "REPLACED"}
SESSIONS = {"NORMAL", "AM", "PM", "SEAMLESS"}
DURATIONS = {"DAY", "GOOD_TILL_CANCEL", "FILL_OR_KILL", "IMMEDIATE_OR_CANCEL"}
ORDER_TYPES = {"MARKET", "LIMIT", "STOP", "STOP_LIMIT", "TRAILING_STOP", "MARKET_ON_CLOSE", "LIMIT_ON_CLOSE"}
INSTRUCTIONS = {"BUY", "SELL", "SELL_SHORT", "BUY_TO_COVER"}
ORDER_KEYS = {
    "session",
    "duration",
    "orderType",
    "orderStrategyType",
    "orderLegCollection",
    "price",
    "stopPrice",
    "stopPriceLinkBasis",
    "stopPriceLinkType",
    "stopPriceOffset",
    "childOrderStrategies",
    "complexOrderStrategyType",
}
# (periodType, frequencyType) -> the frequencies Schwab accepts for it.
PRICE_HISTORY_FREQUENCIES = {
    ("day", "minute"): {"1", "5", "10", "15", "30"},
    ("month", "daily"): {"1"},
    ("month", "weekly"): {"1"},
    ("year", "daily"): {"1"},
    ("year", "weekly"): {"1"},
    ("year", "monthly"): {"1"},
    ("ytd", "daily"): {"1"},
    ("ytd", "weekly"): {"1"},
}
_PRICE_AT_LEAST_ONE = re.compile(r"^[1-9]\d*\.\d{2}$")
_PERCENT = re.compile(r"^(0|[1-9]\d?)(\.\d{1,2})?$")
LINK_BASES = {"MANUAL", "BASE", "TRIGGER", "LAST", "BID", "ASK", "ASK_BID", "MARK", "AVERAGE"}
# The quote field a trailing stop follows, by its stopPriceLinkBasis (others follow the last price).
TRAIL_QUOTE_FIELDS = {"LAST": "lastPrice", "BID": "bidPrice", "ASK": "askPrice", "MARK": "mark"}
_PRICE_BELOW_ONE = re.compile(r"^0\.\d{2,4}$")


@dataclass
class FakeAccount:
    """One brokerage account: money and holdings (symbol -> [long, short, average price])."""

    number: str
    hash_value: str
    cash: Decimal
    buying_power: Decimal
    positions: dict[str, list[Decimal]] = field(default_factory=dict)


class SchwabFakeState:
    """Everything the fake knows; tests read and change it directly (thread-safe via ``lock``)."""

    def __init__(
        self, client_id: str, client_secret: str, redirect_uri: str | None, access_ttl: float, latency: float = 0.0
    ):
        self.client_id, self.client_secret, self.redirect_uri = client_id, client_secret, redirect_uri
        self.access_ttl = access_ttl
        self.latency = latency
        self.lock = threading.RLock()
        self.plan = FaultPlan()
        self.codes: dict[str, tuple[str, str]] = {}
        self.access_tokens: dict[str, float] = {}
        self.refresh_tokens: dict[str, bool] = {}
        self.token_grants: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.accounts: dict[str, FakeAccount] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.received_payloads: list[dict[str, Any]] = []
        self.quotes: dict[str, dict[str, Any]] = {}
        self.candles: dict[str, list[dict[str, Any]]] = {}
        self.transactions: list[dict[str, Any]] = []
        self.market_open = True
        self.holidays: set[date] = set()
        self._next_id = 1000000001

    # ------------------------------------------------------------------ test controls

    def add_account(self, number: str, cash: str = "10000", buying_power: str = "20000") -> str:
        """Open an account; returns its hash value (what clients use in paths)."""
        hash_value = hashlib.sha256(number.encode()).hexdigest().upper()
        with self.lock:
            self.accounts[hash_value] = FakeAccount(number, hash_value, Decimal(cash), Decimal(buying_power))
        return hash_value

    def set_position(self, account_hash: str, symbol: str, long: str = "0", short: str = "0", avg: str = "0") -> None:
        """Set a holding directly."""
        with self.lock:
            self.accounts[account_hash].positions[symbol] = [Decimal(long), Decimal(short), Decimal(avg)]

    def set_price(self, symbol: str, last: str, bid: str | None = None, ask: str | None = None) -> None:
        """Quote a symbol (bid/ask default to last, mark to the midpoint)."""
        bid_d, ask_d = Decimal(bid or last), Decimal(ask or last)
        self.set_quote(symbol, lastPrice=Decimal(last), bidPrice=bid_d, askPrice=ask_d, mark=(bid_d + ask_d) / 2)

    def set_quote(self, symbol: str, **quote: Any) -> None:
        """Set a symbol's raw ``quote`` object (for missing or impossible values); working trailing
        stops on the symbol follow it and fill once it crosses them."""
        quote.setdefault("quoteTime", int(time.time() * 1000))
        with self.lock:
            self.quotes[symbol] = quote
            self._run_trailing_stops(symbol)

    def _run_trailing_stops(self, symbol: str) -> None:
        for order_id, order in list(self.orders.items()):
            leg = order["orderLegCollection"][0]
            if order["orderType"] != "TRAILING_STOP" or order["status"] != "WORKING":
                continue
            price = self._trail_price(order) if leg["instrument"]["symbol"] == symbol else None
            if price is not None and _trail_crossed(order, price):
                self.fill(order_id, str(order["remainingQuantity"]), str(price))

    def _trail_price(self, order: dict[str, Any]) -> Decimal | None:
        """The quote price a trailing stop follows, or None without a usable quote."""
        quote = self.quotes.get(order["orderLegCollection"][0]["instrument"]["symbol"], {})
        price = quote.get(TRAIL_QUOTE_FIELDS.get(order["stopPriceLinkBasis"], "lastPrice"))
        return Decimal(str(price)) if isinstance(price, Decimal | int | str) else None

    def add_candle(self, symbol: str, at: datetime, ohlc: tuple[str, str, str, str], volume: int = 100) -> None:
        """Record one bar of price history (open, high, low, close); answered as numbers, time in ms."""
        prices = dict(zip(("open", "high", "low", "close"), map(Decimal, ohlc), strict=True))
        with self.lock:
            self.candles.setdefault(symbol, []).append(prices | {"volume": volume, "datetime": _epoch_ms(at)})

    def issue_tokens(self, access_ttl: float | None = None) -> tuple[str, str]:
        """A fresh (access, refresh) pair as if the user had logged in."""
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        with self.lock:
            self.access_tokens[access] = time.time() + (self.access_ttl if access_ttl is None else access_ttl)
            self.refresh_tokens[refresh] = True
        return access, refresh

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is now expired (the next call gets a 401)."""
        with self.lock:
            self.access_tokens = dict.fromkeys(self.access_tokens, 0.0)

    def kill_refresh_tokens(self) -> None:
        """Every refresh token is dead (as after 7 days): refreshes answer invalid_client."""
        with self.lock:
            self.refresh_tokens = dict.fromkeys(self.refresh_tokens, False)

    @property
    def refresh_count(self) -> int:
        """How many refresh grants succeeded."""
        return self.token_grants["refresh_token"]

    @property
    def orders_received(self) -> int:
        """How many order bodies (place and replace) reached the order routes."""
        return len(self.received_payloads)

    def set_status(self, order_id: str, status: str) -> None:
        """Force an order's Schwab status."""
        with self.lock:
            self.orders[order_id]["status"] = status

    def fill(self, order_id: str, quantity: str | int, price: str) -> None:
        """Execute part or all of an order: an execution leg, position, cash and a TRADE transaction."""
        with self.lock:
            order = self.orders[order_id]
            qty, px = Decimal(str(quantity)), Decimal(price)
            order["orderActivityCollection"].append(_execution(len(order["orderActivityCollection"]) + 1, qty, px))
            order["filledQuantity"] += qty
            order["remainingQuantity"] -= qty
            order["status"] = "FILLED" if order["remainingQuantity"] <= 0 else "WORKING"
            if order["status"] == "FILLED":
                order["closeTime"] = _schwab_now()
            self._book_fill(order, qty, px)

    def _book_fill(self, order: dict[str, Any], qty: Decimal, px: Decimal) -> None:
        leg = order["orderLegCollection"][0]
        symbol, instruction = leg["instrument"]["symbol"], leg["instruction"]
        account = self.accounts[order["_account"]]
        holding = account.positions.setdefault(symbol, [Decimal(0), Decimal(0), px])
        index, change = {"BUY": (0, qty), "SELL": (0, -qty), "SELL_SHORT": (1, qty), "BUY_TO_COVER": (1, -qty)}[
            instruction
        ]
        holding[index] += change
        sign = 1 if instruction in ("BUY", "BUY_TO_COVER") else -1
        account.cash -= sign * qty * px
        self.transactions.append(
            {
                "activityId": 9000 + len(self.transactions),
                "time": _schwab_now(),
                "type": "TRADE",
                "status": "VALID",
                "orderId": order["orderId"],
                "netAmount": -sign * qty * px,
                "transferItems": [
                    {"instrument": {"symbol": symbol, "assetType": "EQUITY"}, "amount": qty, "price": px}
                ],
            }
        )

    # ------------------------------------------------------------------ order book

    def create_order(self, account_hash: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Store a validated order as WORKING and return it."""
        with self.lock:
            order_id, self._next_id = str(self._next_id), self._next_id + 1
            leg = payload["orderLegCollection"][0]
            order = {
                **payload,
                "_account": account_hash,
                "orderId": int(order_id),
                "accountNumber": self.accounts[account_hash].number,
                "status": "WORKING",
                "enteredTime": _schwab_now(),
                "quantity": Decimal(leg["quantity"]),
                "filledQuantity": Decimal(0),
                "remainingQuantity": Decimal(leg["quantity"]),
                "cancelable": True,
                "editable": True,
                "orderActivityCollection": [],
            }
            for key in ("price", "stopPrice", "stopPriceOffset"):
                if key in order:
                    order[key] = Decimal(order[key])
            if order["orderType"] == "TRAILING_STOP":
                order["_trailAnchor"] = self._trail_price(order)  # trailing starts from the price at entry
            self.orders[order_id] = order
            return order

    def business_rejection(self, account_hash: str, payload: dict[str, Any]) -> str | None:
        """Why Schwab would refuse this valid order, in its own words, or None."""
        leg = payload["orderLegCollection"][0]
        symbol, instruction, qty = leg["instrument"]["symbol"], leg["instruction"], Decimal(leg["quantity"])
        last = self.quotes.get(symbol, {}).get("lastPrice")
        if not self.market_open:
            return "The market is closed for the NORMAL session."
        if "stopPrice" in payload and last is not None:
            stop, selling = Decimal(payload["stopPrice"]), instruction in ("SELL", "SELL_SHORT")
            if (selling and stop >= last) or (not selling and stop <= last):
                side = "below" if selling else "above"
                return f"Order_Sys_0002: Stop price must be {side} the current market price."
        held = self.accounts[account_hash].positions.get(symbol, [Decimal(0)])[0]
        if instruction == "SELL" and qty > held:
            return "Position_Sys_0001: Oversold - the order quantity exceeds the long position held."
        price = Decimal(payload["price"]) if "price" in payload else last
        if instruction == "BUY" and price is not None and qty * price > self.accounts[account_hash].buying_power:
            return "Account_Sys_0005: Insufficient buying power."
        return None


def create_schwab_fake(
    client_id: str,
    client_secret: str,
    *,
    redirect_uri: str | None = None,
    access_ttl: float = 1800.0,
    latency: float = 0.0,
) -> tuple[Flask, SchwabFakeState]:
    """The fake's Flask app and its state (faults queue on ``state.plan``; every answer waits ``latency`` s)."""
    app = Flask("schwab_fake")
    state = SchwabFakeState(client_id, client_secret, redirect_uri, access_ttl, latency)
    _install_latency(app, state)
    _install_counter(app, state)
    install_faults(app, state.plan)
    _install_guards(app, state)
    _install_oauth(app, state)
    _install_accounts(app, state)
    _install_orders(app, state)
    _install_market_data(app, state)
    return app, state


# ---------------------------------------------------------------------------- routes


def _install_latency(app: Flask, state: SchwabFakeState) -> None:
    @app.before_request
    def _wait() -> None:
        if state.latency > 0:
            time.sleep(state.latency)


def _install_counter(app: Flask, state: SchwabFakeState) -> None:
    @app.before_request
    def _count() -> None:
        rule = request.url_rule.rule if request.url_rule is not None else request.path
        with state.lock:
            state.requests[f"{request.method} {rule}"] += 1


def _install_guards(app: Flask, state: SchwabFakeState) -> None:
    @app.before_request
    def _check_bearer() -> Any:
        if not request.path.startswith(("/trader/", "/marketdata/")):
            return None
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        with state.lock:
            expires = state.access_tokens.get(token, 0.0)
        if expires <= time.time():
            return _error(401, "Access token is missing, unknown or expired")
        return None

    @app.after_request
    def _correlation_id(response: Response) -> Response:
        response.headers["Schwab-Client-CorrelId"] = str(uuid.uuid4())
        return response


def _install_oauth(app: Flask, state: SchwabFakeState) -> None:
    @app.get("/v1/oauth/authorize")
    def authorize() -> Any:
        args = request.args
        redirect_uri = args.get("redirect_uri", "")
        if args.get("client_id") != state.client_id or not redirect_uri:
            return _error(400, "unknown client_id or missing redirect_uri")
        if state.redirect_uri is not None and redirect_uri != state.redirect_uri:
            return _error(400, "redirect_uri does not match the registered callback")
        if args.get("response_type") != "code" or args.get("code_challenge_method") != "S256":
            return _error(400, "response_type=code and code_challenge_method=S256 are required")
        if not args.get("code_challenge"):
            return _error(400, "code_challenge is required")
        code = f"C0.{secrets.token_urlsafe(24)}@"  # real codes end in "@": clients must URL-decode
        with state.lock:
            state.codes[code] = (args["code_challenge"], redirect_uri)
        return redirect(f"{redirect_uri}?{urlencode({'code': code, 'state': args.get('state', '')})}", 302)

    @app.post("/v1/oauth/token")
    def token() -> Any:
        auth = request.authorization
        if auth is None or not _same(auth.username, state.client_id) or not _same(auth.password, state.client_secret):
            return jsonify(error="invalid_client", error_description="Client authentication failed"), 401
        grant = request.form.get("grant_type")
        if grant == "authorization_code":
            return _code_grant(state)
        if grant == "refresh_token":
            return _refresh_grant(state)
        return jsonify(error="unsupported_grant_type"), 400


def _code_grant(state: SchwabFakeState) -> Any:
    form = request.form
    with state.lock:
        challenge, redirect_uri = state.codes.pop(form.get("code", ""), ("", ""))
    verifier = form.get("code_verifier", "")
    computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    if not challenge or form.get("redirect_uri") != redirect_uri or not _same(computed, challenge):
        return jsonify(error="invalid_grant", error_description="code, redirect_uri or code_verifier invalid"), 400
    return _token_answer(state, "authorization_code", *state.issue_tokens())


def _refresh_grant(state: SchwabFakeState) -> Any:
    refresh = request.form.get("refresh_token", "")
    with state.lock:
        alive = state.refresh_tokens.get(refresh, False)
    if not alive:
        return jsonify(error="invalid_client", error_description="refresh token invalid"), 400
    access, _ = state.issue_tokens()
    return _token_answer(state, "refresh_token", access, refresh)


def _token_answer(state: SchwabFakeState, grant: str, access: str, refresh: str) -> Any:
    with state.lock:
        state.token_grants[grant] += 1
    return jsonify(
        access_token=access,
        refresh_token=refresh,
        expires_in=int(state.access_ttl),
        token_type="Bearer",
        scope="api",
        id_token=secrets.token_urlsafe(16),
    )


def _install_accounts(app: Flask, state: SchwabFakeState) -> None:
    @app.get("/trader/v1/accounts/accountNumbers")
    def account_numbers() -> Any:
        return jsonify([{"accountNumber": a.number, "hashValue": a.hash_value} for a in state.accounts.values()])

    @app.get("/trader/v1/accounts/<account_hash>")
    def account(account_hash: str) -> Any:
        found = state.accounts.get(account_hash)
        if found is None:
            return _error(404, "Account not found")
        return _json({"securitiesAccount": _securities_account(state, found)})

    @app.get("/trader/v1/accounts/<account_hash>/transactions")
    def transactions(account_hash: str) -> Any:
        window = _window(request.args.get("startDate"), request.args.get("endDate"))
        if window is None:
            return _error(400, "startDate and endDate are required ISO-8601 times")
        types = set(request.args.get("types", "TRADE").split(","))
        rows = [t for t in state.transactions if t["type"] in types and _inside(t["time"], window)]
        return _json(rows)


def _securities_account(state: SchwabFakeState, account: FakeAccount) -> dict[str, Any]:
    positions, value = [], Decimal(0)
    for symbol, (long, short, avg) in account.positions.items():
        last = state.quotes.get(symbol, {}).get("lastPrice", avg)
        market_value = (long - short) * last
        value += market_value
        positions.append(
            {
                "longQuantity": long,
                "shortQuantity": short,
                "averagePrice": avg,
                "marketValue": market_value,
                "instrument": {"symbol": symbol, "assetType": "EQUITY"},
            }
        )
    balances = {
        "cashBalance": account.cash,
        "buyingPower": account.buying_power,
        "liquidationValue": account.cash + value,
    }
    return {"type": "MARGIN", "accountNumber": account.number, "currentBalances": balances, "positions": positions}


def _install_orders(app: Flask, state: SchwabFakeState) -> None:
    @app.post(ORDERS_RULE)
    def place(account_hash: str) -> Any:
        return _accept_order(state, account_hash, request.get_json(silent=True))

    @app.get(ORDERS_RULE)
    def list_orders(account_hash: str) -> Any:
        window = _window(request.args.get("fromEnteredTime"), request.args.get("toEnteredTime"))
        if window is None or window[1] - window[0] > timedelta(days=60):
            return _error(400, "fromEnteredTime and toEnteredTime are required, at most 60 days apart")
        status = request.args.get("status")
        rows = [
            o
            for o in state.orders.values()
            if o["_account"] == account_hash
            and _inside(o["enteredTime"], window)
            and (status is None or o["status"] == status)
        ]
        return _json(rows)

    @app.get(ORDER_RULE)
    def get_order(account_hash: str, order_id: str) -> Any:
        order = state.orders.get(order_id)
        if order is None or order["_account"] != account_hash:
            return _error(404, "Order not found")
        return _json(order)

    @app.delete(ORDER_RULE)
    def cancel(account_hash: str, order_id: str) -> Any:
        with state.lock:
            order = state.orders.get(order_id)
            if order is None or order["_account"] != account_hash:
                return _error(404, "Order not found")
            if order["status"] in TERMINAL:
                return _error(400, f"Order is not cancelable in status {order['status']}")
            order.update(status="CANCELED", cancelable=False, editable=False, closeTime=_schwab_now())
        return Response(status=200)

    @app.put(ORDER_RULE)
    def replace(account_hash: str, order_id: str) -> Any:
        with state.lock:
            old = state.orders.get(order_id)
            if old is None or old["_account"] != account_hash:
                return _error(404, "Order not found")
            if old["status"] in TERMINAL:
                return _error(400, f"Order cannot be replaced in status {old['status']}")
            answer = _accept_order(state, account_hash, request.get_json(silent=True))
            if answer.status_code == 201:
                old.update(status="REPLACED", cancelable=False, editable=False, closeTime=_schwab_now())
            return answer


def _accept_order(state: SchwabFakeState, account_hash: str, payload: Any) -> Response:
    """Validate, apply route faults and business rules, then book the order."""
    state.received_payloads.append(payload)
    if account_hash not in state.accounts:
        return _error(404, "Account not found")
    problem = validate_order(payload)
    fault = current_fault()
    if problem is None and fault is not None and fault.kind == Fault.REJECT:
        problem = str(fault.params.get("reason", "Order rejected"))
    problem = problem or state.business_rejection(account_hash, payload)
    if problem is not None:
        return _error(400, problem)
    order = state.create_order(account_hash, payload)
    order_id = str(order["orderId"])
    if fault is not None and fault.kind == Fault.PARTIAL_FILL:
        quantity = fault.params.get("quantity", max(1, int(order["quantity"]) // 2))
        state.fill(order_id, quantity, str(fault.params.get("price", order.get("price", "10.00"))))
    response = Response(status=201)
    if fault is None or fault.kind != Fault.NO_LOCATION:
        response.headers["Location"] = f"{request.host_url}trader/v1/accounts/{account_hash}/orders/{order_id}"
    return response


def validate_order(payload: Any) -> str | None:
    """Why an order body breaks the documented shape, or None when it is well-formed."""
    if not isinstance(payload, dict):
        return "The request body must be a JSON order object"
    unknown = set(payload) - ORDER_KEYS
    if unknown:
        return f"Unknown order fields: {sorted(unknown)}"
    for key, allowed in (("session", SESSIONS), ("duration", DURATIONS), ("orderType", ORDER_TYPES)):
        if payload.get(key) not in allowed:
            return f"Invalid or missing {key}: {payload.get(key)!r}"
    if payload.get("orderStrategyType") != "SINGLE":
        return "orderStrategyType must be SINGLE for a single order"
    return _leg_problem(payload.get("orderLegCollection")) or _price_problem(payload)


def _leg_problem(legs: Any) -> str | None:
    if not isinstance(legs, list) or len(legs) != 1 or not isinstance(legs[0], dict):
        return "orderLegCollection must hold exactly one leg"
    leg = legs[0]
    if leg.get("instruction") not in INSTRUCTIONS:
        return f"Invalid instruction: {leg.get('instruction')!r}"
    quantity = leg.get("quantity")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        return "quantity must be a positive whole number"
    instrument = leg.get("instrument")
    if not isinstance(instrument, dict) or not instrument.get("symbol") or instrument.get("assetType") != "EQUITY":
        return "instrument must carry a symbol and assetType EQUITY"
    return None


def _price_problem(payload: dict[str, Any]) -> str | None:
    kind = payload["orderType"]
    needs = {"LIMIT": {"price"}, "STOP": {"stopPrice"}, "STOP_LIMIT": {"price", "stopPrice"}}.get(kind, set())
    trailing = {"stopPriceLinkBasis", "stopPriceLinkType", "stopPriceOffset"}
    needs |= trailing if kind == "TRAILING_STOP" else set()
    present = {key for key in ("price", "stopPrice", *trailing) if key in payload}
    if present != needs:
        return f"{kind} orders take exactly {sorted(needs)}; got {sorted(present)}"
    trail_problem = _trail_problem(payload) if kind == "TRAILING_STOP" else None
    if trail_problem is not None:
        return trail_problem
    for key in ("price", "stopPrice", "stopPriceOffset"):
        value = payload.get(key)
        if key == "stopPriceOffset" and payload.get("stopPriceLinkType") == "PERCENT":
            continue  # checked as a percent by _trail_problem
        if key in payload and not (isinstance(value, str) and _valid_price(value)):
            return f"{key} must be a decimal string (2 decimals at $1 or above, up to 4 below): {value!r}"
    return None


def _trail_problem(payload: dict[str, Any]) -> str | None:
    """A trailing stop follows a documented basis by a VALUE (a price string) or a PERCENT (0-100)."""
    if payload["stopPriceLinkBasis"] not in LINK_BASES:
        return f"Invalid stopPriceLinkBasis: {payload['stopPriceLinkBasis']!r}"
    if payload["stopPriceLinkType"] not in ("VALUE", "PERCENT"):
        return "stopPriceLinkType must be VALUE or PERCENT"
    offset = payload["stopPriceOffset"]
    if payload["stopPriceLinkType"] == "PERCENT" and not (isinstance(offset, str) and _PERCENT.match(offset)):
        return f"A PERCENT stopPriceOffset is a percent string above 0 and below 100, 2 decimals at most: {offset!r}"
    if payload["stopPriceLinkType"] == "PERCENT" and Decimal(offset) <= 0:
        return f"A PERCENT stopPriceOffset must be above 0: {offset!r}"
    return None


def _trail_crossed(order: dict[str, Any], price: Decimal) -> bool:
    """Ratchet the order's anchor in its favour, then say whether ``price`` crossed its trail."""
    selling = order["orderLegCollection"][0]["instruction"] in ("SELL", "SELL_SHORT")
    anchor = order.get("_trailAnchor") or price
    anchor = order["_trailAnchor"] = max(anchor, price) if selling else min(anchor, price)
    offset = order["stopPriceOffset"]
    distance = anchor * offset / 100 if order["stopPriceLinkType"] == "PERCENT" else offset
    return price <= anchor - distance if selling else price >= anchor + distance


def _valid_price(text: str) -> bool:
    return bool(_PRICE_AT_LEAST_ONE.match(text) or _PRICE_BELOW_ONE.match(text)) and Decimal(text) > 0


def _install_market_data(app: Flask, state: SchwabFakeState) -> None:
    @app.get("/marketdata/v1/quotes")
    def quotes() -> Any:
        symbols = [s for s in request.args.get("symbols", "").split(",") if s]
        if not symbols or request.args.get("fields", "quote") != "quote":
            return _error(400, "symbols are required")
        body: dict[str, Any] = {}
        for symbol in symbols:
            if symbol in state.quotes:
                body[symbol] = {"assetMainType": "EQUITY", "symbol": symbol, "realtime": True}
                body[symbol]["quote"] = state.quotes[symbol]
            else:
                body.setdefault("errors", {"invalidSymbols": []})["invalidSymbols"].append(symbol)
        return _json(body)

    @app.get("/marketdata/v1/pricehistory")
    def price_history() -> Any:
        symbol, args = request.args.get("symbol", ""), request.args
        frequencies = PRICE_HISTORY_FREQUENCIES.get((args.get("periodType", ""), args.get("frequencyType", "")))
        if not symbol or frequencies is None or args.get("frequency") not in frequencies:
            return _error(400, "periodType, frequencyType and frequency do not match")
        if not (args.get("startDate", "").isdigit() and args.get("endDate", "").isdigit()):
            return _error(400, "startDate and endDate must be epoch milliseconds")
        start, end = int(args["startDate"]), int(args["endDate"])
        rows = [row for row in state.candles.get(symbol, []) if start <= row["datetime"] <= end]
        return _json({"candles": sorted(rows, key=lambda row: row["datetime"]), "symbol": symbol, "empty": not rows})

    @app.get("/marketdata/v1/markets")
    def markets() -> Any:
        eastern = ZoneInfo("America/New_York")
        day = date.fromisoformat(request.args.get("date") or datetime.now(eastern).date().isoformat())
        if day.weekday() >= 5 or day in state.holidays:
            return jsonify(equity={"equity": {"date": day.isoformat(), "marketType": "EQUITY", "isOpen": False}})
        opens = datetime(day.year, day.month, day.day, 9, 30, tzinfo=eastern)
        closes = opens.replace(hour=16, minute=0)
        hours = {"regularMarket": [{"start": opens.isoformat(), "end": closes.isoformat()}]}
        return jsonify(equity={"EQ": {"date": day.isoformat(), "isOpen": True, "sessionHours": hours}})


# ---------------------------------------------------------------------------- helpers


def _execution(activity_id: int, qty: Decimal, price: Decimal) -> dict[str, Any]:
    leg = {"legId": 1, "quantity": qty, "price": price, "time": _schwab_now()}
    return {"activityType": "EXECUTION", "activityId": activity_id, "executionLegs": [leg]}


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _schwab_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _window(start: str | None, end: str | None) -> tuple[datetime, datetime] | None:
    try:
        return (datetime.fromisoformat(start or ""), datetime.fromisoformat(end or ""))
    except ValueError:
        return None


def _inside(stamp: str, window: tuple[datetime, datetime]) -> bool:
    return window[0] <= datetime.fromisoformat(stamp) <= window[1]


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _error(status: int, message: str) -> Response:
    response = jsonify(message=message)
    response.status_code = status
    return response


def _json(body: Any) -> Response:
    """JSON with Decimals as numbers, as Schwab answers (Flask would turn them into strings)."""
    return jsonify(_numbers(body))


def _numbers(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value
