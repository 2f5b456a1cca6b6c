"""Order tickets: what a trader asks for, checked before anything is stored or sent.

A bad field is refused with its name (``details["field"]``) and words a trader understands.
A trailing stop (the entry's, or the trade's protective one) trails by an amount in price units
or by a percent of the best price seen, never both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal

from utils.brokers.base import Broker
from utils.enums import OrderPurpose, OrderSide, OrderType, TimeInForce
from utils.exceptions import InvalidInputError
from utils.risk.inputs import OrderIntent

SYMBOL = re.compile(r"^[A-Z][A-Z0-9.\-/]{0,19}$")
ENTRY_SIDES = frozenset({OrderSide.BUY, OrderSide.SELL_SHORT})
MAX_DECIMALS = 8
HUNDRED = Decimal(100)
# (amount field, percent field): each pair is one trailing stop given in one unit or the other.
TRAIL_PAIRS = (("trail_offset", "trail_percent"), ("trailing_stop_offset", "trailing_stop_percent"))
# The ticket fields the audit trail records (when set).
AUDITED = [
    "symbol",
    "side",
    "quantity",
    "order_type",
    "limit_price",
    "stop_price",
    "trail_offset",
    "trail_percent",
    "stop_loss_price",
    "trailing_stop_offset",
    "trailing_stop_percent",
]


@dataclass(frozen=True)
class OrderTicket:
    """An entry as a trader (or a script) asks for it; ``validated`` checks it before anything else."""

    connection_id: int
    symbol: str
    side: OrderSide
    quantity: Decimal
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_offset: Decimal | None = None
    trail_percent: Decimal | None = None
    stop_loss_price: Decimal | None = None
    take_profit_price: Decimal | None = None
    trailing_stop_offset: Decimal | None = None
    trailing_stop_percent: Decimal | None = None
    idempotency_key: str | None = None


def validated(ticket: OrderTicket) -> OrderTicket:
    """The ticket with a normalised symbol, or InvalidInputError naming the first bad field."""
    symbol = ticket.symbol.strip().upper()
    if not SYMBOL.match(symbol):
        raise _bad("symbol", "Enter a symbol such as AAPL or BTC-USD.")
    if ticket.side not in ENTRY_SIDES:
        raise _bad("side", "An entry buys (long) or sells short; close a position to sell it.")
    _positive("quantity", ticket.quantity)
    for name in ("limit_price", "stop_price", "trail_offset", "stop_loss_price", "take_profit_price"):
        if getattr(ticket, name) is not None:
            _positive(name, getattr(ticket, name))
    if ticket.trailing_stop_offset is not None:
        _positive("trailing_stop_offset", ticket.trailing_stop_offset)
    _check_trails(ticket)
    _check_prices_for_type(ticket)
    _check_protection_sides(ticket)
    key = (ticket.idempotency_key or "").strip() or None
    if key is not None and len(key) > 128:
        raise _bad("idempotency_key", "An Idempotency-Key has at most 128 characters.")
    return replace(ticket, symbol=symbol, idempotency_key=key)


def check_quantity_precision(broker: Broker, quantity: Decimal) -> None:
    """Refuse a fractional quantity where the broker trades whole shares only."""
    if not broker.capabilities.fractional_quantity and quantity != quantity.to_integral_value():
        raise _bad("quantity", "This broker trades whole shares only.")


def _check_trails(ticket: OrderTicket) -> None:
    """Each percent lies strictly between 0 and 100, and each trailing stop has one unit only."""
    for amount, percent in TRAIL_PAIRS:
        value = getattr(ticket, percent)
        if value is not None:
            _positive(percent, value)
            if value >= HUNDRED:
                raise _bad(percent, f"The {_words(percent)} must be below 100.")
            if getattr(ticket, amount) is not None:
                raise _bad(percent, f"Give a {_words(amount)} or a {_words(percent)}, not both.")


def _check_prices_for_type(ticket: OrderTicket) -> None:
    kind = ticket.order_type.value.replace("_", "-")
    if ticket.order_type == OrderType.TRAILING_STOP and ticket.trail_offset is None and ticket.trail_percent is None:
        raise _bad("trail_offset", f"A {kind} order needs a trail amount or a trail percent.")
    needs = {
        OrderType.LIMIT: ("limit_price",),
        OrderType.STOP: ("stop_price",),
        OrderType.STOP_LIMIT: ("stop_price", "limit_price"),
    }.get(ticket.order_type, ())
    for name in needs:
        if getattr(ticket, name) is None:
            raise _bad(name, f"A {kind} order needs a {_words(name)}.")


def _check_protection_sides(ticket: OrderTicket) -> None:
    long = ticket.side == OrderSide.BUY
    stop, target = ticket.stop_loss_price, ticket.take_profit_price
    if stop is not None and target is not None and (stop >= target if long else stop <= target):
        raise _bad("take_profit_price", "The take-profit must be on the other side of the entry from the stop-loss.")


def _positive(name: str, value: Decimal) -> None:
    if not value.is_finite() or value <= 0:
        raise _bad(name, f"The {_words(name)} must be a number above 0.")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_DECIMALS:
        raise _bad(name, f"The {_words(name)} has more than {MAX_DECIMALS} decimal places.")


def _words(name: str) -> str:
    """A field name as a trader reads it: ``trail_offset`` is the trail amount."""
    return name.replace("_offset", "_amount").replace("_", " ")


def _bad(field: str, message: str) -> InvalidInputError:
    return InvalidInputError(message, details={"field": field})


def intent_of(ticket: OrderTicket) -> OrderIntent:
    """What the risk engine weighs of this entry."""
    return OrderIntent(
        symbol=ticket.symbol,
        side=ticket.side,
        quantity=ticket.quantity,
        order_type=ticket.order_type,
        limit_price=ticket.limit_price,
        stop_price=ticket.stop_price,
        stop_loss_price=ticket.stop_loss_price,
        take_profit_price=ticket.take_profit_price,
        purpose=OrderPurpose.ENTRY,
    )


def audit_details(ticket: OrderTicket) -> dict[str, str]:
    """The ticket's set fields as strings, for the audit trail."""
    return {name: str(getattr(ticket, name)) for name in AUDITED if getattr(ticket, name) is not None}
