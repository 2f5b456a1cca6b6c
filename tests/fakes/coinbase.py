"""A stateful fake of Coinbase Advanced Trade (/api/v3/brokerage) that checks CDP JWTs for real.

Every request must carry an ES256 JWT signed by the configured key pair's private half, with
``kid``/``sub`` = the key name, ``iss`` = "cdp", a fresh ``nonce``, a lifetime of at most 120 s and
``uri`` = "METHOD host/path" for this very request; anything else is a 401. Order payloads are
validated strictly against the documented shapes. Faults come from tests.fakes.server
(route-specific: REJECT with ``reason``, PARTIAL_FILL with ``fraction`` and ``price``, NO_LOCATION:
the order is created but the answer carries no order id).

    fake = create_coinbase_fake(key_name, public_key_pem)
    server = FakeServer(fake.app).start()
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from flask import Blueprint, Flask, jsonify, request
from flask.typing import ResponseReturnValue

from tests.fakes.server import Fault, FaultPlan, current_fault, install_faults

PREFIX = "/api/v3/brokerage"
DECIMAL_STRING = re.compile(r"^\d+(\.\d+)?$")
STOP_DIRECTIONS = {"STOP_DIRECTION_STOP_UP", "STOP_DIRECTION_STOP_DOWN"}
LIVE_STATUSES = {"PENDING", "QUEUED", "OPEN"}
# configuration -> (required fields, optional fields)
SHAPES: dict[str, tuple[set[str], set[str]]] = {
    "market_market_ioc": (set(), {"base_size", "quote_size"}),
    "limit_limit_gtc": ({"base_size", "limit_price"}, {"post_only"}),
    "limit_limit_gtd": ({"base_size", "limit_price", "end_time"}, {"post_only"}),
    "stop_limit_stop_limit_gtc": ({"base_size", "limit_price", "stop_price", "stop_direction"}, set()),
    "trigger_bracket_gtc": ({"base_size", "limit_price", "stop_trigger_price"}, set()),
}
ORDER_TYPES = {
    "market_market_ioc": ("MARKET", "IMMEDIATE_OR_CANCEL"),
    "limit_limit_gtc": ("LIMIT", "GOOD_UNTIL_CANCELLED"),
    "limit_limit_gtd": ("LIMIT", "GOOD_UNTIL_DATE_TIME"),
    "stop_limit_stop_limit_gtc": ("STOP_LIMIT", "GOOD_UNTIL_CANCELLED"),
    "trigger_bracket_gtc": ("BRACKET", "GOOD_UNTIL_CANCELLED"),
}
EDITABLE = {"limit_limit_gtc", "stop_limit_stop_limit_gtc"}
CANDLE_GRANULARITIES = {
    "ONE_MINUTE": 60,
    "FIVE_MINUTE": 300,
    "FIFTEEN_MINUTE": 900,
    "THIRTY_MINUTE": 1800,
    "ONE_HOUR": 3600,
    "TWO_HOUR": 7200,
    "SIX_HOUR": 21600,
    "ONE_DAY": 86400,
}
MAX_CANDLES = 350


class PayloadError(ValueError):
    """A request body that does not match the documented shape (answered 400 INVALID_ARGUMENT)."""


@dataclass
class RecordedRequest:
    """One request as the fake received it, before any fault or auth check."""

    method: str
    path: str
    query: dict[str, list[str]]
    token: str
    body: Any


@dataclass
class CoinbaseFake:
    """The fake's state and its test helpers; ``app`` is what FakeServer serves."""

    key_name: str
    public_key: Any
    plan: FaultPlan
    fee_rate: Decimal = Decimal("0.006")
    max_page_size: int = 250
    app: Flask = field(init=False)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    fills: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    products: dict[str, dict[str, str]] = field(default_factory=dict)
    prices: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    # product -> bars as Coinbase sends them: {"start": UNIX seconds, "low", "high", "open", "close", "volume"}
    candles: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    received: list[RecordedRequest] = field(default_factory=list)
    seen_nonces: set[str] = field(default_factory=set)
    lock: threading.RLock = field(default_factory=threading.RLock)

    # ---------------------------------------------------------------- helpers for tests

    def add_product(self, product_id: str, base_increment: str, quote_increment: str, base_min_size: str = "0") -> None:
        """Make a product tradable with its increments."""
        self.products[product_id] = {
            "product_id": product_id,
            "base_increment": base_increment,
            "quote_increment": quote_increment,
            "base_min_size": base_min_size,
        }

    def set_price(self, product_id: str, bid: str, ask: str) -> None:
        """Set the top of book of a product."""
        self.prices[product_id] = (Decimal(bid), Decimal(ask))

    def add_candle(self, product_id: str, start: datetime, ohlc: tuple[str, str, str, str], volume: str = "1") -> None:
        """Record one bar of price history (open, high, low, close as decimal strings)."""
        open_, high, low, close = ohlc
        row = {"start": str(int(start.timestamp())), "low": low, "high": high, "open": open_, "close": close}
        with self.lock:
            self.candles.setdefault(product_id, []).append(row | {"volume": volume})

    def set_balance(self, currency: str, available: str, hold: str = "0") -> str:
        """Create or update the wallet of a currency; returns its uuid."""
        with self.lock:
            for wallet in self.accounts:
                if wallet["currency"] == currency:
                    wallet["available_balance"]["value"], wallet["hold"]["value"] = available, hold
                    return str(wallet["uuid"])
            wallet_id = str(uuid.uuid4())
            self.accounts.append(_wallet(wallet_id, currency, available, hold))
            return wallet_id

    def fill(self, order_id: str, size: str, price: str | None = None) -> dict[str, Any]:
        """Execute ``size`` of an order at ``price`` (default: its limit price or the touch)."""
        with self.lock:
            order = self.orders[order_id]
            params = next(iter(order["order_configuration"].values()))
            execution = Decimal(price) if price else self._execution_price(order, params)
            return self._record_fill(order, Decimal(size), execution)

    def order_count(self) -> int:
        """How many orders exist at the fake."""
        return len(self.orders)

    def create_requests(self) -> list[RecordedRequest]:
        """Every POST /orders received (faulted or refused ones included)."""
        return [r for r in self.received if r.method == "POST" and r.path == f"{PREFIX}/orders"]

    def add_order(self, **overrides: Any) -> dict[str, Any]:
        """Seed an order directly (for listing tests); returns it."""
        order = _new_order(
            {
                "client_order_id": str(uuid.uuid4()),
                "product_id": "BTC-USD",
                "side": "BUY",
                "order_configuration": {"limit_limit_gtc": {"base_size": "1", "limit_price": "1", "post_only": False}},
            }
        )
        order.update(overrides)
        with self.lock:
            self.orders[order["order_id"]] = order
        return order

    # ---------------------------------------------------------------- internals

    def _execution_price(self, order: dict[str, Any], params: dict[str, Any]) -> Decimal:
        if "limit_price" in params:
            return Decimal(params["limit_price"])
        bid, ask = self.prices.get(order["product_id"], (Decimal(0), Decimal(0)))
        return ask if order["side"] == "BUY" else bid

    def _record_fill(self, order: dict[str, Any], size: Decimal, price: Decimal) -> dict[str, Any]:
        commission = (size * price * self.fee_rate).quantize(Decimal("0.00000001"))
        now = _now()
        entry = {
            "entry_id": str(uuid.uuid4()),
            "trade_id": str(uuid.uuid4()),
            "order_id": order["order_id"],
            "trade_time": now,
            "trade_type": "FILL",
            "price": str(price),
            "size": str(size),
            "commission": str(commission),
            "product_id": order["product_id"],
            "sequence_timestamp": now,
            "liquidity_indicator": "TAKER",
            "size_in_quote": False,
            "user_id": "fake-user",
            "side": order["side"],
        }
        self.fills.append(entry)
        _apply_fill(order, size, price, commission, now)
        return entry

    def _verify_jwt(self) -> str | None:
        """Why the request's JWT is refused, or None when it is good."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return "missing bearer token"
        token = header.removeprefix("Bearer ")
        try:
            head = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["ES256"],
                issuer="cdp",
                options={"require": ["sub", "iss", "nbf", "exp", "uri"]},
            )
        except jwt.PyJWTError as exc:
            return f"invalid jwt: {type(exc).__name__}"
        return self._check_claims(head, claims)

    def _check_claims(self, head: dict[str, Any], claims: dict[str, Any]) -> str | None:
        expected_uri = f"{request.method} {request.host}{request.path}"
        nonce = str(head.get("nonce") or "")
        if head.get("kid") != self.key_name or claims.get("sub") != self.key_name:
            return "wrong key name"
        if claims.get("uri") != expected_uri:
            return "uri claim does not match the request"
        if int(claims["exp"]) - int(claims["nbf"]) > 120:
            return "jwt lives longer than 120 s"
        with self.lock:
            if not nonce or nonce in self.seen_nonces:
                return "missing or replayed nonce"
            self.seen_nonces.add(nonce)
        return None


def create_coinbase_fake(
    key_name: str,
    public_key_pem: str | bytes,
    *,
    plan: FaultPlan | None = None,
    products: dict[str, tuple[str, str, str]] | None = None,
    max_page_size: int = 250,
) -> CoinbaseFake:
    """A fake Coinbase for one CDP key; ``products`` maps id -> (base_inc, quote_inc, base_min)."""
    pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
    fake = CoinbaseFake(key_name, serialization.load_pem_public_key(pem), plan or FaultPlan())
    fake.max_page_size = max_page_size
    for product_id, (base_inc, quote_inc, base_min) in (products or {}).items():
        fake.add_product(product_id, base_inc, quote_inc, base_min)
    app = Flask("coinbase_fake")

    @app.before_request
    def _record() -> None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        query = {key: request.args.getlist(key) for key in request.args}
        fake.received.append(RecordedRequest(request.method, request.path, query, token, request.get_json(silent=True)))

    install_faults(app, fake.plan)

    @app.before_request
    def _authenticate() -> ResponseReturnValue | None:
        problem = fake._verify_jwt()
        if problem is None:
            return None
        return jsonify(error="UNAUTHENTICATED", message="Unauthorized", error_details=problem), 401

    app.register_blueprint(_routes(fake), url_prefix=PREFIX)
    fake.app = app
    return fake


def _routes(fake: CoinbaseFake) -> Blueprint:
    api = Blueprint("coinbase", __name__)

    @api.get("/accounts")
    def list_accounts() -> ResponseReturnValue:
        page, has_next, cursor = _page(fake, fake.accounts)
        return jsonify(accounts=page, has_next=has_next, cursor=cursor, size=len(page))

    @api.get("/best_bid_ask")
    def best_bid_ask() -> ResponseReturnValue:
        wanted = request.args.getlist("product_ids") or list(fake.prices)
        books = [_pricebook(pid, *fake.prices[pid]) for pid in wanted if pid in fake.prices]
        return jsonify(pricebooks=books)

    @api.get("/products/<product_id>")
    def get_product(product_id: str) -> ResponseReturnValue:
        product = fake.products.get(product_id)
        if product is None:
            return jsonify(error="NOT_FOUND", message="ProductID is invalid"), 404
        bid, ask = fake.prices.get(product_id, (Decimal(0), Decimal(0)))
        return jsonify(**product, price=str((bid + ask) / 2), status="online", product_type="SPOT")

    @api.get("/products/<product_id>/candles")
    def product_candles(product_id: str) -> ResponseReturnValue:
        if product_id not in fake.products:
            return jsonify(error="NOT_FOUND", message="ProductID is invalid"), 404
        problem = _candle_window_problem(request.args)
        if problem:
            return jsonify(error="INVALID_ARGUMENT", message=problem), 400
        start, end = int(request.args["start"]), int(request.args["end"])
        rows = [row for row in fake.candles.get(product_id, []) if start <= int(row["start"]) <= end]
        return jsonify(candles=sorted(rows, key=lambda row: -int(row["start"])))  # newest first, as Coinbase

    @api.post("/orders")
    def create_order() -> ResponseReturnValue:
        body = request.get_json(silent=True)
        try:
            _validate_create(body)
        except PayloadError as exc:
            return jsonify(error="INVALID_ARGUMENT", message=str(exc)), 400
        with fake.lock:
            return jsonify(_create(fake, body))

    @api.post("/orders/batch_cancel")
    def batch_cancel() -> ResponseReturnValue:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or set(body) != {"order_ids"} or not isinstance(body["order_ids"], list):
            return jsonify(error="INVALID_ARGUMENT", message="order_ids (a list) is required"), 400
        with fake.lock:
            return jsonify(results=[_cancel(fake, str(order_id)) for order_id in body["order_ids"]])

    @api.post("/orders/edit")
    def edit_order() -> ResponseReturnValue:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or "order_id" not in body or not set(body) <= {"order_id", "size", "price"}:
            return jsonify(error="INVALID_ARGUMENT", message="edit takes order_id, size and price"), 400
        with fake.lock:
            reason = _edit(fake, body)
        errors = [{"edit_failure_reason": reason}] if reason else []
        return jsonify(success=reason is None, errors=errors)

    @api.get("/orders/historical/batch")
    def list_orders() -> ResponseReturnValue:
        statuses = request.args.getlist("order_status")
        if "OPEN" in statuses and len(statuses) > 1:
            return jsonify(error="INVALID_ARGUMENT", message="OPEN cannot be combined with other statuses"), 400
        orders = sorted(fake.orders.values(), key=lambda o: o["created_time"], reverse=True)
        selected = [o for o in orders if _order_matches(o, statuses)]
        page, has_next, cursor = _page(fake, selected)
        return jsonify(orders=page, has_next=has_next, cursor=cursor, sequence="0")

    @api.get("/orders/historical/fills")
    def list_fills() -> ResponseReturnValue:
        order_ids = set(request.args.getlist("order_ids"))
        start, end = request.args.get("start_sequence_timestamp"), request.args.get("end_sequence_timestamp")
        selected = [
            f
            for f in fake.fills
            if (not order_ids or f["order_id"] in order_ids) and _in_window(f["trade_time"], start, end)
        ]
        page, _, cursor = _page(fake, selected)
        return jsonify(fills=page, cursor=cursor)

    @api.get("/orders/historical/<order_id>")
    def get_order(order_id: str) -> ResponseReturnValue:
        order = fake.orders.get(order_id)
        if order is None:
            return jsonify(error="NOT_FOUND", message="order not found"), 404
        return jsonify(order=order)

    return api


# -------------------------------------------------------------------- order book logic


def _create(fake: CoinbaseFake, body: dict[str, Any]) -> dict[str, Any]:
    existing = next((o for o in fake.orders.values() if o["client_order_id"] == body["client_order_id"]), None)
    if existing is not None:  # Coinbase's duplicate guard: the same client_order_id is the same order
        return _success(existing)
    fault = current_fault()
    if fault is not None and fault.kind == Fault.REJECT:
        return _failure(body, str(fault.params.get("reason", "INSUFFICIENT_FUND")))
    product = fake.products.get(body["product_id"])
    if product is None:
        return _failure(body, "INVALID_PRODUCT_ID")
    problem = _precision_problem(body["order_configuration"], product)
    if problem:
        return _failure(body, problem)
    order = _new_order(body)
    fake.orders[order["order_id"]] = order
    _execute_on_entry(fake, order, fault)
    if fault is not None and fault.kind == Fault.NO_LOCATION:  # accepted, but the answer lacks the id
        return {"success": True, "success_response": {"product_id": order["product_id"]}}
    return _success(order)


def _execute_on_entry(fake: CoinbaseFake, order: dict[str, Any], fault: Any) -> None:
    kind, params = next(iter(order["order_configuration"].items()))
    if kind == "market_market_ioc":
        price = fake._execution_price(order, params)
        if price > 0:  # without a price the market order rests until a test fills it
            size = Decimal(params["base_size"]) if "base_size" in params else Decimal(params["quote_size"]) / price
            fake._record_fill(order, size, price)
        return
    if fault is not None and fault.kind == Fault.PARTIAL_FILL:
        size = Decimal(params["base_size"]) * Decimal(str(fault.params.get("fraction", "0.5")))
        price = Decimal(str(fault.params["price"])) if "price" in fault.params else fake._execution_price(order, params)
        fake._record_fill(order, size, price)


def _apply_fill(order: dict[str, Any], size: Decimal, price: Decimal, commission: Decimal, now: str) -> None:
    filled_before = Decimal(order["filled_size"])
    filled = filled_before + size
    value = Decimal(order["filled_value"]) + size * price
    order.update(
        filled_size=str(filled),
        filled_value=str(value),
        average_filled_price=str(value / filled),
        total_fees=str(Decimal(order["total_fees"]) + commission),
        number_of_fills=str(int(order["number_of_fills"]) + 1),
        last_fill_time=now,
    )
    params = next(iter(order["order_configuration"].values()))
    target = Decimal(params.get("base_size", filled))
    order["completion_percentage"] = str(min(filled / target * 100, Decimal(100)))
    if filled >= target:
        order["status"] = "FILLED"


def _cancel(fake: CoinbaseFake, order_id: str) -> dict[str, Any]:
    order = fake.orders.get(order_id)
    if order is None:
        return {"success": False, "failure_reason": "UNKNOWN_CANCEL_ORDER", "order_id": order_id}
    if order["status"] not in LIVE_STATUSES:
        return {"success": False, "failure_reason": "INVALID_CANCEL_REQUEST", "order_id": order_id}
    order["status"] = "CANCELLED"
    return {"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": order_id}


def _edit(fake: CoinbaseFake, body: dict[str, Any]) -> str | None:
    order = fake.orders.get(str(body["order_id"]))
    if order is None:
        return "ORDER_NOT_FOUND"
    kind, params = next(iter(order["order_configuration"].items()))
    if kind not in EDITABLE or order["status"] != "OPEN":
        return "UNSUPPORTED_ORDER_CONFIGURATION" if kind not in EDITABLE else "ORDER_NOT_OPEN"
    for name in ("size", "price"):
        if name in body and not _is_decimal_string(body[name]):
            return f"INVALID_{name.upper()}"
    product = fake.products[order["product_id"]]
    update = {
        "base_size": body.get("size", params["base_size"]),
        "limit_price": body.get("price", params["limit_price"]),
    }
    problem = _precision_problem({kind: {**params, **update}}, product)
    if problem:
        return problem
    if Decimal(update["base_size"]) < Decimal(order["filled_size"]):
        return "CANNOT_EDIT_TO_BELOW_FILLED_SIZE"
    order.setdefault("edit_history", []).append({"price": params["limit_price"], "size": params["base_size"]})
    params.update(update)
    return None


def _new_order(body: dict[str, Any]) -> dict[str, Any]:
    kind = next(iter(body["order_configuration"]))
    order_type, time_in_force = ORDER_TYPES[kind]
    return {
        "order_id": str(uuid.uuid4()),
        "client_order_id": body["client_order_id"],
        "product_id": body["product_id"],
        "user_id": "fake-user",
        "side": body["side"],
        "order_configuration": {kind: dict(body["order_configuration"][kind])},
        "status": "OPEN",
        "time_in_force": time_in_force,
        "order_type": order_type,
        "created_time": _now(),
        "completion_percentage": "0",
        "filled_size": "0",
        "average_filled_price": "0",
        "filled_value": "0",
        "number_of_fills": "0",
        "total_fees": "0",
        "trigger_status": "STOP_PENDING" if order_type == "STOP_LIMIT" else "INVALID_ORDER_TYPE",
        "reject_reason": "",
        "reject_message": "",
        "cancel_message": "",
        "product_type": "SPOT",
        "last_fill_time": None,
        "edit_history": [],
    }


def _success(order: dict[str, Any]) -> dict[str, Any]:
    keys = ("order_id", "product_id", "side", "client_order_id")
    return {
        "success": True,
        "success_response": {key: order[key] for key in keys},
        "order_configuration": order["order_configuration"],
    }


def _failure(body: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "success": False,
        "failure_reason": "UNKNOWN_FAILURE_REASON",
        "order_id": "",
        "error_response": {
            "error": reason,
            "message": reason.replace("_", " ").lower(),
            "error_details": "",
            "preview_failure_reason": f"PREVIEW_{reason}",
            "new_order_failure_reason": "UNKNOWN_FAILURE_REASON",
        },
        "order_configuration": body.get("order_configuration"),
    }


# -------------------------------------------------------------------- validation


def _validate_create(body: Any) -> None:
    if not isinstance(body, dict):
        raise PayloadError("the body must be a JSON object")
    expected = {"client_order_id", "product_id", "side", "order_configuration"}
    if set(body) != expected:
        raise PayloadError(f"fields must be exactly {sorted(expected)}")
    if not isinstance(body["client_order_id"], str) or not body["client_order_id"].strip():
        raise PayloadError("client_order_id is required")
    if body["side"] not in ("BUY", "SELL"):
        raise PayloadError("side must be BUY or SELL")
    if not isinstance(body["product_id"], str):
        raise PayloadError("product_id must be a string")
    _validate_configuration(body["order_configuration"])


def _validate_configuration(configuration: Any) -> None:
    if not isinstance(configuration, dict) or len(configuration) != 1:
        raise PayloadError("order_configuration must hold exactly one configuration")
    kind, params = next(iter(configuration.items()))
    if kind not in SHAPES or not isinstance(params, dict):
        raise PayloadError(f"unsupported order configuration {kind!r}")
    required, optional = SHAPES[kind]
    if not required <= set(params) <= required | optional:
        raise PayloadError(f"{kind} takes {sorted(required)} and optionally {sorted(optional)}")
    if kind == "market_market_ioc" and len(params) != 1:
        raise PayloadError("market_market_ioc takes exactly one of base_size or quote_size")
    for name, value in params.items():
        _validate_field(name, value)


def _validate_field(name: str, value: Any) -> None:
    if name.endswith(("_size", "_price")) and not _is_decimal_string(value):
        raise PayloadError(f"{name} must be a positive decimal string")
    if name == "post_only" and not isinstance(value, bool):
        raise PayloadError("post_only must be a boolean")
    if name == "stop_direction" and value not in STOP_DIRECTIONS:
        raise PayloadError("stop_direction is not valid")
    if name == "end_time":
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise PayloadError("end_time must be RFC 3339") from exc
        if moment.tzinfo is None or moment <= datetime.now(UTC):
            raise PayloadError("end_time must be an aware time in the future")


def _is_decimal_string(value: Any) -> bool:
    try:
        return isinstance(value, str) and bool(DECIMAL_STRING.match(value)) and Decimal(value) > 0
    except InvalidOperation:
        return False


def _precision_problem(configuration: dict[str, Any], product: dict[str, str]) -> str | None:
    params = next(iter(configuration.values()))
    base_inc, quote_inc = Decimal(product["base_increment"]), Decimal(product["quote_increment"])
    if "base_size" in params:
        size = Decimal(params["base_size"])
        if size % base_inc != 0:
            return "INVALID_SIZE_PRECISION"
        if size < Decimal(product["base_min_size"]):
            return "INVALID_SIZE_TOO_SMALL"
    for name in ("limit_price", "stop_price", "stop_trigger_price"):
        if name in params and Decimal(params[name]) % quote_inc != 0:
            return "INVALID_PRICE_PRECISION"
    return None


# -------------------------------------------------------------------- small pieces


def _candle_window_problem(args: Any) -> str | None:
    """Coinbase's refusals: missing or non-numeric bounds, an unknown granularity, more than 350 bars."""
    seconds = CANDLE_GRANULARITIES.get(args.get("granularity", ""))
    if seconds is None:
        return "granularity is invalid"
    if not (args.get("start", "").isdigit() and args.get("end", "").isdigit()):
        return "start and end must be UNIX seconds"
    if (int(args["end"]) - int(args["start"])) / seconds > MAX_CANDLES:
        return f"number of candles requested should be less than {MAX_CANDLES}"
    return None


def _page(fake: CoinbaseFake, items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool, str]:
    """One page by ``limit`` and ``cursor`` (an offset here); returns (page, has_next, next cursor)."""
    limit = min(int(request.args.get("limit") or fake.max_page_size), fake.max_page_size)
    start = int(request.args.get("cursor") or 0)
    page = items[start : start + limit]
    has_next = start + limit < len(items)
    return page, has_next, str(start + limit) if has_next else ""


def _order_matches(order: dict[str, Any], statuses: list[str]) -> bool:
    if statuses and order["status"] not in statuses:
        return False
    products = request.args.getlist("product_ids")
    if products and order["product_id"] not in products:
        return False
    return _in_window(order["created_time"], request.args.get("start_date"), request.args.get("end_date"))


def _in_window(moment: str, start: str | None, end: str | None) -> bool:
    when = datetime.fromisoformat(moment)
    if start and when < datetime.fromisoformat(start):
        return False
    return not (end and when > datetime.fromisoformat(end))


def _pricebook(product_id: str, bid: Decimal, ask: Decimal) -> dict[str, Any]:
    return {
        "product_id": product_id,
        "bids": [{"price": str(bid), "size": "1.5"}],
        "asks": [{"price": str(ask), "size": "2.25"}],
        "time": _now(),
    }


def _wallet(wallet_id: str, currency: str, available: str, hold: str) -> dict[str, Any]:
    return {
        "uuid": wallet_id,
        "name": f"{currency} Wallet",
        "currency": currency,
        "available_balance": {"value": available, "currency": currency},
        "default": False,
        "active": True,
        "type": "ACCOUNT_TYPE_FIAT" if currency == "USD" else "ACCOUNT_TYPE_CRYPTO",
        "ready": True,
        "hold": {"value": hold, "currency": currency},
    }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
