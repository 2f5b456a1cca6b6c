"""Coinbase Advanced Trade payloads: order configurations out, orders, fills and quotes in.

Pure functions, no I/O. Shapes follow the Advanced Trade REST reference
(https://docs.cdp.coinbase.com/api-reference/advanced-trade-api/rest-api) as summarised in
BROKER_APIS.md. Sizes and prices travel as decimal strings; money stays Decimal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from utils.brokers.base import BrokerOrder, Candle, CandleInterval, Fill, OrderRequest, Quote, Transaction
from utils.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from utils.exceptions import (
    DataValidationError,
    InvalidOrderError,
    NotFoundError,
    OrderRejectedError,
    UnknownOrderOutcomeError,
)

# Our bar length -> Coinbase's candle granularity; one call returns at most MAX_CANDLES bars.
GRANULARITIES = {
    CandleInterval.ONE_MINUTE: "ONE_MINUTE",
    CandleInterval.FIVE_MINUTES: "FIVE_MINUTE",
    CandleInterval.FIFTEEN_MINUTES: "FIFTEEN_MINUTE",
    CandleInterval.THIRTY_MINUTES: "THIRTY_MINUTE",
    CandleInterval.ONE_DAY: "ONE_DAY",
}
MAX_CANDLES = 350
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Coinbase status -> ours. OPEN with filled_size > 0 is a partial fill (there is no partial status).
STATUS_MAP: dict[str, OrderStatus] = {
    "PENDING": OrderStatus.WORKING,
    "QUEUED": OrderStatus.WORKING,
    "OPEN": OrderStatus.WORKING,
    "FILLED": OrderStatus.FILLED,
    "CANCELLED": OrderStatus.CANCELLED,
    "EXPIRED": OrderStatus.EXPIRED,
    "FAILED": OrderStatus.REJECTED,
    "CANCEL_QUEUED": OrderStatus.CANCEL_PENDING,
    "UNKNOWN_ORDER_STATUS": OrderStatus.UNKNOWN,
}
# Ours -> the Coinbase statuses to ask for when listing (PARTIALLY_FILLED is filtered afterwards).
STATUS_QUERY: dict[OrderStatus, tuple[str, ...]] = {
    # Coinbase refuses OPEN combined with other statuses (verify); PENDING/QUEUED are fleeting.
    OrderStatus.WORKING: ("OPEN",),
    OrderStatus.PARTIALLY_FILLED: ("OPEN",),
    OrderStatus.FILLED: ("FILLED",),
    OrderStatus.CANCELLED: ("CANCELLED",),
    OrderStatus.EXPIRED: ("EXPIRED",),
    OrderStatus.REJECTED: ("FAILED",),
    OrderStatus.CANCEL_PENDING: ("CANCEL_QUEUED",),
    OrderStatus.UNKNOWN: ("UNKNOWN_ORDER_STATUS",),
}
READABLE_REASONS: dict[str, str] = {
    "INSUFFICIENT_FUND": "Insufficient funds",
    "INSUFFICIENT_FUNDS": "Insufficient funds",
    "INVALID_SIZE_PRECISION": "The size has too many decimals for this product",
    "INVALID_PRICE_PRECISION": "The price has too many decimals for this product",
    "INVALID_LIMIT_PRICE_POST_ONLY": "A post-only limit price would cross the book",
    "INVALID_PRODUCT_ID": "Unknown product",
    "UNSUPPORTED_ORDER_CONFIGURATION": "Coinbase does not support this order configuration",
    "ORDER_ENTRY_DISABLED": "Trading is disabled for this product",
    "UNKNOWN_CANCEL_ORDER": "The order is unknown to Coinbase",
    "INVALID_CANCEL_REQUEST": "The order can no longer be cancelled",
    "ORDER_NOT_FOUND": "The order is unknown to Coinbase",
    "CANNOT_EDIT_TO_BELOW_FILLED_SIZE": "The new size is below the filled size",
}
CONFIG_TYPES: dict[str, OrderType] = {
    "market_market_ioc": OrderType.MARKET,
    "limit_limit_gtc": OrderType.LIMIT,
    "limit_limit_gtd": OrderType.LIMIT,
    "limit_limit_fok": OrderType.LIMIT,
    "sor_limit_ioc": OrderType.LIMIT,
    "stop_limit_stop_limit_gtc": OrderType.STOP_LIMIT,
    "stop_limit_stop_limit_gtd": OrderType.STOP_LIMIT,
    "trigger_bracket_gtc": OrderType.LIMIT,
    "trigger_bracket_gtd": OrderType.LIMIT,
}


@dataclass(frozen=True)
class ProductRules:
    """A product's increments, read from GET /products/{product_id}."""

    product_id: str
    base_increment: Decimal
    quote_increment: Decimal
    base_min_size: Decimal


def readable_reason(code: str, message: str = "") -> str:
    """A Coinbase failure code in words (``INSUFFICIENT_FUND`` -> "Insufficient funds")."""
    code = (code or "").strip()
    if code in READABLE_REASONS:
        return READABLE_REASONS[code]
    if message:
        return message[:200]
    if code:
        return code.replace("_", " ").capitalize()
    return "No reason given"


def decimal_or_zero(value: Any) -> Decimal:
    """Decimal of a Coinbase number field ("" or None count as zero)."""
    if value in (None, ""):
        return Decimal(0)
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise DataValidationError(details={"provider": "coinbase", "value": str(value)[:40]}) from exc


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from an RFC 3339 string; None when absent."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise DataValidationError(details={"provider": "coinbase", "time": str(value)[:40]}) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    """A datetime as Coinbase expects it: UTC, with a Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def round_down(value: Decimal, increment: Decimal) -> Decimal:
    """``value`` rounded DOWN to a multiple of ``increment``, with the increment's decimals."""
    if increment <= 0:
        return value
    steps = (value / increment).to_integral_value(rounding=ROUND_DOWN)
    return (steps * increment).quantize(increment)


def decimal_string(value: Decimal) -> str:
    """A Decimal as a plain decimal string, never in exponent notation."""
    return format(value, "f")


def product_rules(payload: Mapping[str, Any]) -> ProductRules:
    """ProductRules from a GET /products/{id} answer."""
    return ProductRules(
        product_id=str(payload.get("product_id", "")),
        base_increment=decimal_or_zero(payload.get("base_increment")),
        quote_increment=decimal_or_zero(payload.get("quote_increment")),
        base_min_size=decimal_or_zero(payload.get("base_min_size")),
    )


def end_of_utc_day(now: datetime) -> datetime:
    """The last second of ``now``'s UTC day: a DAY order is sent as GTD until then."""
    day = now.astimezone(UTC).date()
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


def coinbase_side(side: OrderSide) -> str:
    """BUY or SELL; short selling does not exist on Coinbase spot."""
    if side == OrderSide.BUY:
        return "BUY"
    if side == OrderSide.SELL:
        return "SELL"
    raise InvalidOrderError(f"Coinbase spot trading has no {side.value} orders; use buy or sell.")


def check_native(request: OrderRequest) -> None:
    """Refuse, before any HTTP call, what Coinbase cannot do natively."""
    if request.order_type in (OrderType.STOP, OrderType.TRAILING_STOP):
        raise InvalidOrderError(
            f"Coinbase has no native {request.order_type.value.replace('_', ' ')} order; it must be emulated.",
            details={"order_type": request.order_type.value},
        )
    coinbase_side(request.side)
    if request.quantity <= 0:
        raise InvalidOrderError("The quantity must be positive.")


def order_configuration(request: OrderRequest, rules: ProductRules, now: datetime) -> dict[str, Any]:
    """The ``order_configuration`` object of POST /orders, sizes and prices rounded DOWN to increments."""
    check_native(request)
    size = sized(request.quantity, rules)
    if request.order_type == OrderType.MARKET:
        return {"market_market_ioc": {"base_size": size}}
    limit = priced(request.limit_price, rules, "limit")
    if request.order_type == OrderType.LIMIT:
        return _limit_configuration(request.time_in_force, size, limit, now)
    if request.time_in_force != TimeInForce.GTC:
        raise InvalidOrderError("Coinbase stop-limit orders are good-till-cancelled: send time_in_force=gtc.")
    direction = "STOP_DIRECTION_STOP_UP" if request.side == OrderSide.BUY else "STOP_DIRECTION_STOP_DOWN"
    stop = priced(request.stop_price, rules, "stop")
    return {
        "stop_limit_stop_limit_gtc": {
            "base_size": size,
            "limit_price": limit,
            "stop_price": stop,
            "stop_direction": direction,
        }
    }


def _limit_configuration(tif: TimeInForce, size: str, limit: str, now: datetime) -> dict[str, Any]:
    body = {"base_size": size, "limit_price": limit, "post_only": False}
    if tif == TimeInForce.GTC:
        return {"limit_limit_gtc": body}
    if tif == TimeInForce.DAY:
        return {"limit_limit_gtd": {**body, "end_time": rfc3339(end_of_utc_day(now))}}
    raise InvalidOrderError(f"Coinbase limit orders are sent GTC or DAY here, not {tif.value}.")


def sized(quantity: Decimal, rules: ProductRules) -> str:
    """The base size rounded DOWN to the product's base_increment; refused below the minimum."""
    size = round_down(quantity, rules.base_increment)
    if size <= 0 or size < rules.base_min_size:
        raise InvalidOrderError(
            f"The quantity {quantity} is below {rules.product_id}'s minimum size {rules.base_min_size}.",
            details={"base_min_size": str(rules.base_min_size), "base_increment": str(rules.base_increment)},
        )
    return decimal_string(size)


def priced(price: Decimal | None, rules: ProductRules, what: str) -> str:
    """A limit or stop price rounded DOWN to the product's quote_increment."""
    if price is None or price <= 0:
        raise InvalidOrderError(f"A positive {what} price is required.")
    rounded = round_down(price, rules.quote_increment)
    if rounded <= 0:
        raise InvalidOrderError(f"The {what} price {price} is below {rules.product_id}'s price increment.")
    return decimal_string(rounded)


def parse_order(payload: Mapping[str, Any], fills: tuple[Fill, ...] = ()) -> BrokerOrder:
    """A BrokerOrder from one order object of /orders/historical/*."""
    kind, params = _configuration(payload)
    filled = decimal_or_zero(payload.get("filled_size"))
    quantity = decimal_or_zero(params.get("base_size")) or filled
    raw_status = str(payload.get("status", "UNKNOWN_ORDER_STATUS"))
    status = STATUS_MAP.get(raw_status, OrderStatus.UNKNOWN)
    if raw_status == "OPEN" and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED
    average = decimal_or_zero(payload.get("average_filled_price"))
    return BrokerOrder(
        broker_order_id=str(payload["order_id"]),
        symbol=str(payload.get("product_id", "")),
        side=OrderSide.BUY if payload.get("side") == "BUY" else OrderSide.SELL,
        order_type=CONFIG_TYPES.get(kind, OrderType.LIMIT),
        status=status,
        quantity=quantity,
        filled_quantity=filled,
        remaining_quantity=max(quantity - filled, Decimal(0)),
        average_fill_price=average if filled > 0 and average > 0 else None,
        client_order_id=payload.get("client_order_id") or None,
        limit_price=_optional_decimal(params.get("limit_price")),
        stop_price=_optional_decimal(params.get("stop_price") or params.get("stop_trigger_price")),
        entered_at=parse_time(payload.get("created_time")),
        closed_at=parse_time(payload.get("last_fill_time")) if status == OrderStatus.FILLED else None,
        status_detail=_status_detail(payload),
        fees=decimal_or_zero(payload.get("total_fees")),
        fills=fills,
    )


def _configuration(payload: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """The one (kind, params) pair of an order's ``order_configuration``."""
    configuration = payload.get("order_configuration") or {}
    for kind, params in configuration.items():
        return str(kind), params if isinstance(params, Mapping) else {}
    return "", {}


def _optional_decimal(value: Any) -> Decimal | None:
    number = decimal_or_zero(value)
    return number if number > 0 else None


def _status_detail(payload: Mapping[str, Any]) -> str:
    parts = [str(payload.get(key) or "") for key in ("reject_reason", "reject_message", "cancel_message")]
    return "; ".join(part for part in parts if part and part != "REJECT_REASON_UNSPECIFIED")


def parse_fill(payload: Mapping[str, Any]) -> Fill:
    """A Fill from /orders/historical/fills; its id is entry_id, else trade_id."""
    fill_id = payload.get("entry_id") or payload.get("trade_id")
    moment = parse_time(payload.get("trade_time"))
    if not fill_id or moment is None:
        raise DataValidationError("A Coinbase fill had no id or time.", details={"provider": "coinbase"})
    return Fill(
        fill_id=str(fill_id),
        quantity=decimal_or_zero(payload.get("size")),
        price=decimal_or_zero(payload.get("price")),
        time=moment,
        commission=decimal_or_zero(payload.get("commission")),
    )


def fill_transaction(payload: Mapping[str, Any]) -> Transaction:
    """A trade Transaction from a fill: cash out for a BUY, in for a SELL, commission deducted."""
    fill = parse_fill(payload)
    side = str(payload.get("side", ""))
    notional = fill.quantity * fill.price
    amount = (notional if side == "SELL" else -notional) - fill.commission
    product = str(payload.get("product_id", ""))
    return Transaction(
        transaction_id=fill.fill_id,
        kind="trade",
        time=fill.time,
        amount=amount,
        description=f"{side} {fill.quantity} {product} @ {fill.price} (fee {fill.commission})",
        symbol=product or None,
    )


def parse_pricebook(book: Mapping[str, Any], fallback_time: datetime) -> Quote | None:
    """A Quote from one best_bid_ask pricebook; None when a side is missing or not positive."""
    bids, asks = book.get("bids") or [], book.get("asks") or []
    if not bids or not asks:
        return None
    bid, ask = decimal_or_zero(bids[0].get("price")), decimal_or_zero(asks[0].get("price"))
    if bid <= 0 or ask <= 0:
        return None
    mid = (bid + ask) / 2
    moment = parse_time(book.get("time")) or fallback_time
    return Quote(symbol=str(book.get("product_id", "")), bid=bid, ask=ask, last=mid, mark=mid, time=moment)


def candle_params(interval: CandleInterval, start: datetime, end: datetime) -> dict[str, str]:
    """Query of GET /products/{id}/candles: UNIX seconds, the window shortened to the latest MAX_CANDLES bars."""
    start = max(start, end - interval.length * MAX_CANDLES)
    return {"start": _unix(start), "end": _unix(end), "granularity": GRANULARITIES[interval]}


def _unix(moment: datetime) -> str:
    return str(int((moment - EPOCH).total_seconds()))


def parse_candle(payload: Mapping[str, Any]) -> Candle:
    """One bar: ``start`` in UNIX seconds and prices as decimal strings; DataValidationError if one is missing."""
    if any(payload.get(name) in (None, "") for name in ("start", "open", "high", "low", "close")):
        raise DataValidationError(details={"provider": "coinbase", "reason": "incomplete candle"})
    prices = {name: decimal_or_zero(payload[name]) for name in ("open", "high", "low", "close")}
    moment = EPOCH + timedelta(seconds=int(decimal_or_zero(payload["start"])))
    return Candle(time=moment, volume=decimal_or_zero(payload.get("volume")), **prices)


def batches(items: list[str], size: int) -> list[list[str]]:
    """``items`` without duplicates, cut into lists of at most ``size``."""
    unique = list(dict.fromkeys(items))
    return [unique[start : start + size] for start in range(0, len(unique), size)]


def day_bounds(at: datetime) -> tuple[datetime, datetime]:
    """Start of ``at``'s UTC day and of the next one."""
    start = datetime.combine(at.astimezone(UTC).date(), time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def accepted_order(request: OrderRequest, body: dict[str, Any], answer: dict[str, Any]) -> BrokerOrder:
    """The SUBMITTED order from a create answer; success:false is a rejection, no order id is unknown."""
    if not answer.get("success"):
        error = answer.get("error_response") or {}
        code = str(error.get("error") or answer.get("failure_reason") or "")
        details = {
            "provider": "coinbase",
            "reason_code": code,
            "client_order_id": request.client_order_id,
            "preview_failure_reason": error.get("preview_failure_reason"),
            "new_order_failure_reason": error.get("new_order_failure_reason"),
        }
        raise OrderRejectedError(readable_reason(code, str(error.get("message") or "")), details=details)
    order_id = (answer.get("success_response") or {}).get("order_id") or answer.get("order_id")
    if not order_id:
        raise UnknownOrderOutcomeError(
            "Coinbase accepted the order without an order id; it will be reconciled, not resent.",
            details={"provider": "coinbase", "client_order_id": request.client_order_id},
        )
    params = next(iter(body["order_configuration"].values()))
    size = Decimal(params["base_size"])
    return BrokerOrder(
        broker_order_id=str(order_id),
        symbol=request.symbol,
        side=request.side,
        order_type=request.order_type,
        status=OrderStatus.SUBMITTED,
        quantity=size,
        filled_quantity=Decimal(0),
        remaining_quantity=size,
        average_fill_price=None,
        client_order_id=request.client_order_id,
        limit_price=Decimal(params["limit_price"]) if "limit_price" in params else None,
        stop_price=Decimal(params["stop_price"]) if "stop_price" in params else None,
        entered_at=datetime.now(UTC),
    )


def resolve_wallet(wallets: list[dict[str, Any]], account_id: str) -> dict[str, Any]:
    """The wallet whose uuid, or else whose currency, is ``account_id``."""
    for wallet in wallets:
        if wallet.get("uuid") == account_id:
            return wallet
    for wallet in wallets:
        if str(wallet.get("currency", "")).upper() == account_id.upper():
            return wallet
    raise NotFoundError("No Coinbase wallet has that id or currency.", details={"account_id": account_id})


def wallet_amount(wallet: Mapping[str, Any], field: str) -> Decimal:
    """A wallet's ``available_balance`` or ``hold`` value as Decimal."""
    return decimal_or_zero((wallet.get(field) or {}).get("value"))
