"""Schwab Trader API payloads: order JSON out, orders, quotes, balances and transactions in.

Pure functions, no I/O. Request prices are strings (2 decimals at $1 or above, 4 below) and
quantities whole numbers; answers are decoded with ``parse_float=Decimal`` so money stays exact.
Shapes: docs/brokers.md ("Charles Schwab Trader API").
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import requests

from utils.brokers.base import (
    Balance,
    BrokerOrder,
    BrokerPosition,
    Candle,
    CandleInterval,
    Fill,
    MarketHours,
    OrderRequest,
    Quote,
    Transaction,
)
from utils.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from utils.exceptions import (
    BrokerAPIError,
    DataValidationError,
    InvalidInputError,
    InvalidOrderError,
    NotFoundError,
    OrderRejectedError,
    UnknownOrderOutcomeError,
)
from utils.money import decimal_text

PROVIDER = "schwab"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PERCENT_STEP = Decimal("0.01")  # a trail percent is sent with at most 2 decimals

DURATIONS = {
    TimeInForce.DAY: "DAY",
    TimeInForce.GTC: "GOOD_TILL_CANCEL",
    TimeInForce.IOC: "IMMEDIATE_OR_CANCEL",
    TimeInForce.FOK: "FILL_OR_KILL",
}
INSTRUCTIONS = {
    OrderSide.BUY: "BUY",
    OrderSide.SELL: "SELL",
    OrderSide.SELL_SHORT: "SELL_SHORT",
    OrderSide.BUY_TO_COVER: "BUY_TO_COVER",
}
ORDER_TYPES = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP: "STOP",
    OrderType.STOP_LIMIT: "STOP_LIMIT",
    OrderType.TRAILING_STOP: "TRAILING_STOP",
}
SIDES = {value: key for key, value in INSTRUCTIONS.items()}
TYPES = {value: key for key, value in ORDER_TYPES.items()} | {
    "MARKET_ON_CLOSE": OrderType.MARKET,
    "LIMIT_ON_CLOSE": OrderType.LIMIT,
}
_DIRECT_STATUSES = {
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELLED,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
    "REPLACED": OrderStatus.REPLACED,
    "PENDING_CANCEL": OrderStatus.CANCEL_PENDING,
    "UNKNOWN": OrderStatus.UNKNOWN,
}
# Our status -> the one Schwab status to filter on server side (others are filtered locally).
SCHWAB_STATUS_FILTER = {ours: theirs for theirs, ours in _DIRECT_STATUSES.items()} | {
    OrderStatus.WORKING: "WORKING",
    OrderStatus.PARTIALLY_FILLED: "WORKING",
}
_LOCATION_ORDER_ID = re.compile(r"/orders/(\d+)/?$")
# Our bar length -> pricehistory's (periodType, frequencyType, frequency); start/end dates bound the window.
PRICE_HISTORY_FREQUENCIES = {
    CandleInterval.ONE_MINUTE: ("day", "minute", 1),
    CandleInterval.FIVE_MINUTES: ("day", "minute", 5),
    CandleInterval.FIFTEEN_MINUTES: ("day", "minute", 15),
    CandleInterval.THIRTY_MINUTES: ("day", "minute", 30),
    CandleInterval.ONE_DAY: ("year", "daily", 1),
}


# ---------------------------------------------------------------------------- requests


def price_step(price: Decimal) -> Decimal:
    """Schwab's price increment: a cent at $1 or above, a hundredth of a cent below."""
    return Decimal("0.01") if price >= 1 else Decimal("0.0001")


def format_price(price: Decimal, name: str = "price") -> str:
    """A request price string: 2 decimals at $1 or above, 4 below; refuses values it would round."""
    if not price.is_finite() or price <= 0:
        raise InvalidOrderError(f"The {name} must be a positive amount.")
    places = price_step(price)
    quantized = price.quantize(places)
    if quantized != price:
        raise InvalidOrderError(f"The {name} {price} has more decimals than Schwab accepts ({places}).")
    return format(quantized, "f")


def format_quantity(quantity: Decimal) -> int:
    """Schwab equity quantities are whole shares (no fractional trading through the API)."""
    if not quantity.is_finite() or quantity <= 0 or quantity != quantity.to_integral_value():
        raise InvalidOrderError("The quantity must be a positive whole number of shares.")
    return int(quantity)


def build_order(request: OrderRequest) -> dict[str, Any]:
    """The order JSON for a place or replace request."""
    order: dict[str, Any] = {
        "session": "NORMAL",
        "duration": DURATIONS[request.time_in_force],
        "orderType": ORDER_TYPES[request.order_type],
        "orderStrategyType": "SINGLE",
        "orderLegCollection": [
            {
                "instruction": INSTRUCTIONS[request.side],
                "quantity": format_quantity(request.quantity),
                "instrument": {"symbol": request.symbol.upper(), "assetType": "EQUITY"},
            }
        ],
    }
    order.update(_price_fields(request))
    return order


def _price_fields(request: OrderRequest) -> dict[str, Any]:
    kind = request.order_type
    fields: dict[str, Any] = {}
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        fields["price"] = format_price(_required(request.limit_price, "limit price"), "limit price")
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT):
        fields["stopPrice"] = format_price(_required(request.stop_price, "stop price"), "stop price")
    if kind == OrderType.TRAILING_STOP:
        fields |= _trail_fields(request)
    return fields


def _trail_fields(request: OrderRequest) -> dict[str, str]:
    """A trailing stop follows the last price by a VALUE (dollars) or a PERCENT of it.

    https://developer.schwab.com/products/trader-api--individual (Place Order Samples: stopPriceLinkType).
    """
    if request.trail_percent is None:
        offset = format_price(_required(request.trail_offset, "trail offset"), "trail offset")
        return {"stopPriceLinkBasis": "LAST", "stopPriceLinkType": "VALUE", "stopPriceOffset": offset}
    if request.trail_offset is not None:
        raise InvalidOrderError("A trailing stop trails by an offset or by a percent, not both.")
    return {
        "stopPriceLinkBasis": "LAST",
        "stopPriceLinkType": "PERCENT",
        "stopPriceOffset": format_percent(request.trail_percent),
    }


def format_percent(percent: Decimal) -> str:
    """A trail percent string (above 0, below 100, at most 2 decimals); refuses values it would round."""
    if not percent.is_finite() or not 0 < percent < 100:
        raise InvalidOrderError(f"The trail percent must be above 0 and below 100; got {percent}.")
    if percent != percent.quantize(PERCENT_STEP):
        raise InvalidOrderError(f"The trail percent {percent} has more decimals than Schwab accepts ({PERCENT_STEP}).")
    return decimal_text(percent)


def _required(value: Decimal | None, name: str) -> Decimal:
    if value is None:
        raise InvalidOrderError(f"A {name} is required for this order type.")
    return value


def order_id_from_location(location: str | None) -> str | None:
    """The order id at the end of a Location header (``…/accounts/{hash}/orders/{id}``), if any."""
    if not location:
        return None
    match = _LOCATION_ORDER_ID.search(urlsplit(location).path)
    return match.group(1) if match else None


def schwab_time(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds, the form Schwab's time query parameters take."""
    if moment.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def price_history_params(symbol: str, interval: CandleInterval, start: datetime, end: datetime) -> dict[str, str]:
    """Query of GET /marketdata/v1/pricehistory: regular session only, dates in epoch milliseconds."""
    period_type, frequency_type, frequency = PRICE_HISTORY_FREQUENCIES[interval]
    return {
        "symbol": symbol,
        "periodType": period_type,
        "frequencyType": frequency_type,
        "frequency": str(frequency),
        "startDate": str(_epoch_ms(start)),
        "endDate": str(_epoch_ms(end)),
        "needExtendedHoursData": "false",
    }


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return int((moment - EPOCH).total_seconds() * 1000)


# ---------------------------------------------------------------------------- answers


def dec(value: Any, name: str = "value") -> Decimal:
    """A Decimal from a JSON number or string; DataValidationError if absent or not a number."""
    if value is None or isinstance(value, bool | float):
        raise DataValidationError(details={"field": name})
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise DataValidationError(details={"field": name}) from exc


def parse_time(value: Any) -> datetime:
    """An aware UTC datetime from Schwab's ISO-8601 strings ("…+0000", "…Z") or epoch milliseconds."""
    if isinstance(value, int):
        return EPOCH + timedelta(milliseconds=value)
    if not isinstance(value, str):
        raise DataValidationError(details={"field": "time"})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise DataValidationError(details={"field": "time"}) from exc
    if parsed.tzinfo is None:
        raise DataValidationError(details={"field": "time", "reason": "no timezone"})
    return parsed.astimezone(UTC)


def map_status(schwab_status: str, filled: Decimal) -> OrderStatus:
    """Schwab's order status in our state names; WORKING with a fill is a partial fill."""
    if schwab_status in _DIRECT_STATUSES:
        return _DIRECT_STATUSES[schwab_status]
    if schwab_status == "WORKING" and filled > 0:
        return OrderStatus.PARTIALLY_FILLED
    return OrderStatus.WORKING


def parse_fills(order: Mapping[str, Any]) -> tuple[Fill, ...]:
    """Executions of an order; ``fill_id`` is activityId-legId (order id and index if absent)."""
    fills = []
    for a_index, activity in enumerate(order.get("orderActivityCollection") or []):
        activity_id = activity.get("activityId", f"{order.get('orderId')}-{a_index}")
        for l_index, leg in enumerate(activity.get("executionLegs") or []):
            leg_id = leg.get("legId", l_index)
            fills.append(
                Fill(
                    fill_id=f"{activity_id}-{leg_id}",
                    quantity=dec(leg.get("quantity"), "executionLegs.quantity"),
                    price=dec(leg.get("price"), "executionLegs.price"),
                    time=parse_time(leg.get("time")),
                )
            )
    return tuple(fills)


def average_price(fills: tuple[Fill, ...]) -> Decimal | None:
    """Quantity-weighted average fill price, or None without fills."""
    quantity = sum((fill.quantity for fill in fills), Decimal(0))
    if quantity == 0:
        return None
    return sum((fill.quantity * fill.price for fill in fills), Decimal(0)) / quantity


def parse_order(order: Mapping[str, Any]) -> BrokerOrder:
    """A Schwab order JSON as a BrokerOrder (single-leg equity orders)."""
    legs = order.get("orderLegCollection") or []
    if not legs:
        raise DataValidationError(details={"field": "orderLegCollection", "order_id": str(order.get("orderId"))})
    leg = legs[0]
    if leg.get("instruction") not in SIDES or order.get("orderType") not in TYPES:
        raise DataValidationError(details={"field": "instruction/orderType", "order_id": str(order.get("orderId"))})
    fills = parse_fills(order)
    filled = dec(order.get("filledQuantity", 0), "filledQuantity")
    quantity = dec(order.get("quantity", leg.get("quantity")), "quantity")
    return BrokerOrder(
        broker_order_id=str(order.get("orderId")),
        symbol=str(leg.get("instrument", {}).get("symbol", "")),
        side=SIDES[leg["instruction"]],
        order_type=TYPES[order["orderType"]],
        status=map_status(str(order.get("status", "UNKNOWN")), filled),
        quantity=quantity,
        filled_quantity=filled,
        remaining_quantity=dec(order.get("remainingQuantity", quantity - filled), "remainingQuantity"),
        average_fill_price=average_price(fills),
        limit_price=_optional_dec(order.get("price")),
        stop_price=_optional_dec(order.get("stopPrice")),
        entered_at=parse_time(order["enteredTime"]) if order.get("enteredTime") else None,
        closed_at=parse_time(order["closeTime"]) if order.get("closeTime") else None,
        status_detail=str(order.get("statusDescription", "")),
        fills=fills,
    )


def _optional_dec(value: Any) -> Decimal | None:
    return None if value is None else dec(value)


def flatten_orders(orders: list[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Every single-leg order in a list, children of OCO/TRIGGER strategies included."""
    for order in orders:
        if order.get("orderLegCollection"):
            yield order
        yield from flatten_orders(order.get("childOrderStrategies") or [])


def quote_problem(body: Mapping[str, Any]) -> str | None:
    """Why a symbol's quote object is unusable (a price missing, zero or negative), else None."""
    quote = body.get("quote")
    if not isinstance(quote, Mapping):
        return "no quote object"
    for key in ("lastPrice", "bidPrice", "askPrice", "mark"):
        if not _positive(quote.get(key)):
            return f"{key} missing or not positive"
    if not isinstance(quote.get("quoteTime", quote.get("tradeTime")), int):
        return "no quote time"
    return None


def _positive(value: Any) -> bool:
    try:
        return dec(value) > 0
    except DataValidationError:
        return False


def parse_quote(symbol: str, body: Mapping[str, Any]) -> Quote:
    """A Quote from one symbol's entry; call ``quote_problem`` first."""
    quote = body["quote"]
    return Quote(
        symbol=symbol,
        bid=dec(quote["bidPrice"]),
        ask=dec(quote["askPrice"]),
        last=dec(quote["lastPrice"]),
        mark=dec(quote["mark"]),
        time=parse_time(quote.get("quoteTime", quote.get("tradeTime"))),
    )


def parse_candle(row: Mapping[str, Any]) -> Candle:
    """One pricehistory bar: prices as numbers, ``datetime`` in epoch milliseconds."""
    prices = {name: dec(row.get(name), name) for name in ("open", "high", "low", "close")}
    return Candle(time=parse_time(row.get("datetime")), volume=dec(row.get("volume", 0), "volume"), **prices)


def parse_balance(account: Mapping[str, Any]) -> Balance:
    """currentBalances of a securitiesAccount (cash accounts lack buyingPower: use cash available)."""
    balances = account.get("currentBalances") or {}
    cash = balances.get("cashBalance", balances.get("totalCash"))
    buying_power = balances.get("buyingPower", balances.get("cashAvailableForTrading"))
    return Balance(
        currency="USD",
        cash=dec(cash, "cashBalance"),
        buying_power=dec(buying_power, "buyingPower"),
        equity=dec(balances.get("liquidationValue"), "liquidationValue"),
    )


def parse_position(position: Mapping[str, Any]) -> BrokerPosition:
    """One position; a short holding has a negative quantity."""
    long_qty = dec(position.get("longQuantity", 0), "longQuantity")
    short_qty = dec(position.get("shortQuantity", 0), "shortQuantity")
    return BrokerPosition(
        symbol=str(position.get("instrument", {}).get("symbol", "")),
        quantity=long_qty - short_qty,
        average_price=dec(position.get("averagePrice", 0), "averagePrice"),
        market_value=dec(position.get("marketValue", 0), "marketValue"),
    )


def parse_transaction(item: Mapping[str, Any]) -> Transaction:
    """A Transaction from one entry of the transactions list (symbol from its non-cash item)."""
    symbol = None
    for transfer in item.get("transferItems") or []:
        instrument = transfer.get("instrument") or {}
        if instrument.get("assetType") not in (None, "CURRENCY") and instrument.get("symbol"):
            symbol = str(instrument["symbol"])
            break
    return Transaction(
        transaction_id=str(item.get("activityId")),
        kind=str(item.get("type", "")),
        time=parse_time(item.get("time")),
        amount=dec(item.get("netAmount", 0), "netAmount"),
        description=str(item.get("description", "")),
        symbol=symbol,
    )


def parse_market_hours(body: Mapping[str, Any], at: datetime) -> MarketHours:
    """Equity hours for ``at``'s day: open when ``at`` falls inside a regular-market session."""
    products = body.get("equity") or {}
    for product in products.values():
        sessions = (product.get("sessionHours") or {}).get("regularMarket") or []
        if product.get("isOpen") and sessions:
            opens_at, closes_at = parse_time(sessions[0]["start"]), parse_time(sessions[-1]["end"])
            inside = any(parse_time(s["start"]) <= at < parse_time(s["end"]) for s in sessions)
            return MarketHours(is_open=inside, opens_at=opens_at, closes_at=closes_at)
    return MarketHours(is_open=False, opens_at=None, closes_at=None)


def eastern_date(moment: datetime) -> str:
    """The New York calendar date of a moment (Schwab's market-hours ``date`` parameter)."""
    return moment.astimezone(ZoneInfo("America/New_York")).date().isoformat()


# ---------------------------------------------------------------------------- rejections

# Schwab's rejection texts vary; match its error codes (as seen in live deployments, e.g.
# QuantConnect/Documentation#2572) and the usual phrases, and say what happened in plain words.
_REJECTIONS = (
    (
        "stop_price_wrong_side",
        re.compile(r"order_sys_0002|stop price.*(above|below|wrong side|market)", re.I),
        "The stop price is on the wrong side of the market: a sell stop must be below, a buy stop above it.",
    ),
    (
        "exceeds_position",
        re.compile(r"position_sys_0001|oversold|more (shares )?than.*(held|hold|own|position)|exceeds.*position", re.I),
        "The order sells more shares than the account holds.",
    ),
    (
        "market_closed",
        re.compile(r"market (is )?closed|outside.*(market|trading) hours|session.*closed", re.I),
        "The market is closed for this order's session.",
    ),
    (
        "insufficient_buying_power",
        re.compile(r"buying power|insufficient (funds|cash)|account_sys_0005", re.I),
        "The account does not have enough buying power for this order.",
    ),
)


def broker_message(body: Any) -> str:
    """The human message in a Schwab error body ("message", "error", or errors[].detail/title)."""
    if not isinstance(body, Mapping):
        return ""
    parts = [str(body[key]) for key in ("message", "error", "error_description") if body.get(key)]
    for error in body.get("errors") or []:
        if isinstance(error, Mapping):
            parts.extend(str(error[key]) for key in ("title", "detail") if error.get(key))
    return "; ".join(dict.fromkeys(parts))[:300]


def rejection(body: Any) -> tuple[str, str]:
    """(reason code, readable words) for an order rejection body."""
    message = broker_message(body)
    for code, pattern, words in _REJECTIONS:
        if pattern.search(message):
            return code, words
    return "rejected", f"Schwab rejected the order: {message or 'no reason given'}."


# ---------------------------------------------------------------------------- responses


def decode_json(response: requests.Response) -> Any:
    """The decoded body (floats as Decimal), None when empty; DataValidationError if not JSON."""
    if not response.content:
        return None
    try:
        return response.json(parse_float=Decimal)
    except ValueError as exc:
        raise DataValidationError(details={"provider": PROVIDER, "reason": "body is not JSON"}) from exc


def error_body(response: requests.Response) -> Any:
    """The decoded body of a refusal, or None when it is empty or not JSON."""
    try:
        return decode_json(response)
    except DataValidationError:
        return None


def ok_json(response: requests.Response) -> Any:
    """The body of a successful read; NotFoundError on 404, BrokerAPIError on any other refusal."""
    if response.status_code == 200:
        return decode_json(response)
    body = error_body(response)
    details = {"provider": PROVIDER, "status": response.status_code, "message": broker_message(body)}
    if response.status_code == 404:
        raise NotFoundError("Schwab does not know that account or order.", details=details)
    raise BrokerAPIError(details=details)


def accepted_order_id(response: requests.Response, request: OrderRequest) -> str:
    """The new order id from a place/replace answer, or the right error."""
    details: dict[str, Any] = {
        "provider": PROVIDER,
        "status": response.status_code,
        "client_order_id": request.client_order_id,
    }
    if response.status_code in (400, 422):
        code, words = rejection(error_body(response))
        raise OrderRejectedError(words, details=details | {"reason": code})
    if not 200 <= response.status_code < 300:
        raise BrokerAPIError(details=details | {"message": broker_message(error_body(response))})
    order_id = order_id_from_location(response.headers.get("Location"))
    if order_id is None:
        # Accepted, but we cannot tell which order it is: reconcile, never resend.
        raise UnknownOrderOutcomeError(details=details | {"cause": "no Location header"})
    return order_id


def submitted_order(order_id: str, request: OrderRequest) -> BrokerOrder:
    """What we know of an order the broker just accepted (our client order id echoed back)."""
    return BrokerOrder(
        broker_order_id=order_id,
        symbol=request.symbol.upper(),
        side=request.side,
        order_type=request.order_type,
        status=OrderStatus.SUBMITTED,
        quantity=request.quantity,
        filled_quantity=Decimal(0),
        remaining_quantity=request.quantity,
        average_fill_price=None,
        client_order_id=request.client_order_id,
        limit_price=request.limit_price,
        stop_price=request.stop_price,
    )


def check_window(since: datetime, until: datetime, longest: timedelta | None) -> None:
    """InvalidInputError unless the window is aware, ordered and no longer than ``longest``."""
    if since.tzinfo is None or until.tzinfo is None:
        raise InvalidInputError("Times must be timezone-aware.")
    if until <= since:
        raise InvalidInputError("The window must end after it starts.")
    if longest is not None and until - since > longest:
        raise InvalidInputError(f"Schwab lists orders over at most {longest.days} days.")
