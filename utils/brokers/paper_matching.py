"""The paper broker's pure engine: account state, entry checks and matching. No I/O.

``utils.brokers.paper.PaperBroker`` loads a ``PaperAccountState`` from its store, calls
``validate_entry``/``new_order`` and ``run_pass`` with quotes and a time, and the store saves
whatever changed. Entry checks raise before anything changes. One *pass* looks at every working
order once at the current quote:

- expiry first (DAY orders at their ``expires_at``), so a late pass never fills an expired order;
- equities are not matched while their market is closed (orders simply keep working);
- STOP/STOP_LIMIT/TRAILING_STOP orders must trigger first (trailing: the anchor ratchets, and the
  stop trails it by an amount or by a percent of the anchor);
- then the order executes at most ``liquidity_per_tick`` (a partial fill, unless FOK);
- IOC cancels what one pass could not fill; FOK fills entirely in one pass or is cancelled.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from utils.brokers.base import TERMINAL_STATUSES, Fill, OrderRequest, Quote
from utils.brokers.paper_prices import PRICE_TICK, day_order_expiry, is_crypto, market_hours
from utils.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from utils.exceptions import InvalidOrderError, OrderRejectedError, SymbolNotFoundError
from utils.money import trail_distance

BPS = Decimal(10000)
CENT = Decimal("0.01")
STORED_SCALE = Decimal("1E-10")  # the database keeps Numeric(28, 10): stored values never need more
CRYPTO_QUANTITY_STEP = Decimal("1E-8")
MAX_AMOUNT = Decimal(10) ** 9  # sanity bound on quantities and prices
MAX_CLIENT_ORDER_ID = 64
MAX_PERCENT = Decimal(100)
STOP_TYPES = frozenset({OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})


@dataclass(frozen=True)
class PaperSettings:
    """How honest the sandbox is: slippage, finite liquidity and commissions."""

    slippage_bps: Decimal = Decimal("2")  # market orders fill this much worse than bid/ask
    liquidity_per_tick: Decimal = Decimal("10000")  # max quantity filled per order per pass; more -> partial
    commission_bps: Decimal = Decimal("0")  # commission as basis points of fill notional
    commission_minimum: Decimal = Decimal("0")  # per fill


@dataclass
class PaperPosition:
    """A long holding; ``average_price`` is the average cost of the shares still held."""

    quantity: Decimal
    average_price: Decimal


@dataclass
class PaperOrder:
    """One paper order with its fills; mutated in place by the matching engine."""

    order_id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    order_type: OrderType
    time_in_force: TimeInForce
    quantity: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    trail_offset: Decimal | None
    status: OrderStatus
    filled_quantity: Decimal
    fills: list[Fill]
    created_at: datetime
    triggered: bool = False
    trail_anchor: Decimal | None = None
    expires_at: datetime | None = None
    closed_at: datetime | None = None
    status_detail: str = ""
    replaces_order_id: str | None = None
    trail_percent: Decimal | None = None

    @property
    def is_working(self) -> bool:
        """Not in a terminal state: it may still fill."""
        return self.status not in TERMINAL_STATUSES

    @property
    def remaining_quantity(self) -> Decimal:
        """What is left to fill (0 once the order is terminal)."""
        return self.quantity - self.filled_quantity if self.is_working else Decimal(0)

    @property
    def average_fill_price(self) -> Decimal | None:
        """Quantity-weighted average of the fills, or None before the first fill."""
        if not self.filled_quantity:
            return None
        notional = sum((fill.quantity * fill.price for fill in self.fills), Decimal(0))
        return (notional / self.filled_quantity).quantize(STORED_SCALE)


@dataclass
class PaperAccountState:
    """One account as a session sees it: cash, positions and working (or just changed) orders."""

    account_id: str
    cash: Decimal
    starting_cash: Decimal
    positions: dict[str, PaperPosition] = field(default_factory=dict)  # quantity-0 positions may be dropped
    orders: dict[str, PaperOrder] = field(default_factory=dict)  # working + created/changed in this session


# ---------------------------------------------------------------------------- prices and money


def commission(settings: PaperSettings, notional: Decimal) -> Decimal:
    """Commission of one fill: max(minimum, notional * bps), rounded to the cent."""
    if not settings.commission_bps and not settings.commission_minimum:
        return Decimal(0)
    fee = max(settings.commission_minimum, notional * settings.commission_bps / BPS)
    return fee.quantize(CENT, rounding=ROUND_HALF_UP)


def market_price(settings: PaperSettings, side: OrderSide, quote: Quote) -> Decimal:
    """A market fill: ask plus slippage for buys, bid minus slippage for sells, on the tick against us."""
    if side == OrderSide.BUY:
        worse, rounding = quote.ask * (1 + settings.slippage_bps / BPS), ROUND_CEILING
    else:
        worse, rounding = quote.bid * (1 - settings.slippage_bps / BPS), ROUND_FLOOR
    return max((worse / PRICE_TICK).to_integral_value(rounding=rounding) * PRICE_TICK, PRICE_TICK)


def limit_price_now(order: PaperOrder, quote: Quote) -> Decimal | None:
    """The price a limit order executes at now, or None when it is not marketable."""
    limit = order.limit_price
    if limit is None:
        return None
    if order.side == OrderSide.BUY:
        return min(quote.ask, limit) if quote.ask <= limit else None
    return max(quote.bid, limit) if quote.bid >= limit else None


def per_pass_liquidity(settings: PaperSettings, symbol: str) -> Decimal:
    """How much one order may fill per pass (whole shares for equities, at least one)."""
    if is_crypto(symbol):
        return max(
            settings.liquidity_per_tick.quantize(CRYPTO_QUANTITY_STEP, rounding=ROUND_DOWN), CRYPTO_QUANTITY_STEP
        )
    return max(settings.liquidity_per_tick.to_integral_value(rounding=ROUND_DOWN), Decimal(1))


# ---------------------------------------------------------------------------- entry


def validate_entry(
    state: PaperAccountState,
    request: OrderRequest,
    quote: Quote | None,
    settings: PaperSettings,
    replacing: PaperOrder | None,
) -> None:
    """Raise (changing nothing) unless the order may be entered."""
    if request.side in (OrderSide.SELL_SHORT, OrderSide.BUY_TO_COVER):
        raise OrderRejectedError("Short selling is not supported by the paper broker.")
    if not 0 < len(request.client_order_id) <= MAX_CLIENT_ORDER_ID:
        raise InvalidOrderError(f"A client order id of 1 to {MAX_CLIENT_ORDER_ID} characters is required.")
    _check_shape(request)
    if quote is None:
        raise SymbolNotFoundError(f"Unknown symbol {request.symbol!r}.")
    if request.side == OrderSide.BUY:
        _check_buying_power(state, request, quote, settings)
    else:
        _check_holdings(state, request, replacing)


def _check_shape(request: OrderRequest) -> None:
    quantity = request.quantity
    if not quantity.is_finite() or not 0 < quantity <= MAX_AMOUNT:
        raise InvalidOrderError("The quantity must be a positive number.")
    if not is_crypto(request.symbol) and quantity != quantity.to_integral_value():
        raise InvalidOrderError(f"{request.symbol} trades in whole shares; {quantity} is fractional.")
    if is_crypto(request.symbol) and quantity % CRYPTO_QUANTITY_STEP:
        raise InvalidOrderError(f"Crypto quantities have at most 8 decimal places; {quantity} has more.")
    trails_by_percent = request.order_type == OrderType.TRAILING_STOP and request.trail_percent is not None
    if trails_by_percent:
        _check_trail_percent(request)
    needs = {
        "limit price": request.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT),
        "stop price": request.order_type in (OrderType.STOP, OrderType.STOP_LIMIT),
        "trail offset": request.order_type == OrderType.TRAILING_STOP and not trails_by_percent,
    }
    values = {
        "limit price": request.limit_price,
        "stop price": request.stop_price,
        "trail offset": request.trail_offset,
    }
    for name, needed in needs.items():
        value = values[name]
        if needed and value is None:
            raise InvalidOrderError(f"A {request.order_type.value} order needs a {name}.")
        if needed and value is not None and not (value.is_finite() and 0 < value <= MAX_AMOUNT):
            raise InvalidOrderError(f"The {name} must be a positive amount.")
        if needed and value is not None and value % PRICE_TICK:
            raise InvalidOrderError(f"The {name} must be a multiple of {PRICE_TICK}; got {value}.")
    if request.time_in_force in (TimeInForce.IOC, TimeInForce.FOK) and request.order_type in STOP_TYPES:
        raise InvalidOrderError("Immediate-or-cancel and fill-or-kill apply to market and limit orders only.")


def _check_trail_percent(request: OrderRequest) -> None:
    """A trail percent lies strictly between 0 and 100 and is not sent with a trail offset."""
    percent = request.trail_percent
    if request.trail_offset is not None:
        raise InvalidOrderError("A trailing stop trails by an offset or by a percent, not both.")
    if percent is None or not (percent.is_finite() and 0 < percent < MAX_PERCENT):
        raise InvalidOrderError(f"The trail percent must be above 0 and below 100; got {percent}.")


def _estimated_buy_price(request: OrderRequest, quote: Quote, settings: PaperSettings) -> Decimal:
    """The most a buy is expected to pay per unit, for the buying-power check."""
    market = market_price(settings, OrderSide.BUY, quote)
    slip = 1 + settings.slippage_bps / BPS
    if request.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and request.limit_price is not None:
        return request.limit_price
    if request.order_type == OrderType.STOP and request.stop_price is not None:
        return max(market, request.stop_price * slip)
    if request.order_type == OrderType.TRAILING_STOP:
        return (quote.ask + trail_distance(quote.ask, request.trail_offset, request.trail_percent)) * slip
    return market


def _check_buying_power(state: PaperAccountState, request: OrderRequest, quote: Quote, settings: PaperSettings) -> None:
    notional = request.quantity * _estimated_buy_price(request, quote, settings)
    needed = notional + commission(settings, notional)
    if needed > state.cash:
        raise OrderRejectedError(
            f"Insufficient buying power: buying {request.quantity} {request.symbol} needs about "
            f"${needed:,.2f} but the account has ${state.cash:,.2f} in cash."
        )


def _check_holdings(state: PaperAccountState, request: OrderRequest, replacing: PaperOrder | None) -> None:
    position = state.positions.get(request.symbol)
    held = position.quantity if position is not None else Decimal(0)
    committed = sum(
        (
            order.remaining_quantity
            for order in state.orders.values()
            if order.is_working
            and order.symbol == request.symbol
            and order.side == OrderSide.SELL
            and order is not replacing
        ),
        Decimal(0),
    )
    if request.quantity > held - committed:
        raise OrderRejectedError(
            f"You are selling more than you hold: {request.quantity} {request.symbol} requested, "
            f"{held - committed} available ({held} held, {committed} already in other sell orders)."
        )


def new_order(request: OrderRequest, now: datetime) -> PaperOrder:
    """A WORKING order for a validated request (prices that do not apply to its type are dropped)."""
    kind = request.order_type
    return PaperOrder(
        order_id=uuid.uuid4().hex,
        client_order_id=request.client_order_id,
        symbol=request.symbol,
        side=request.side,
        order_type=kind,
        time_in_force=request.time_in_force,
        quantity=request.quantity,
        limit_price=request.limit_price if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
        stop_price=request.stop_price if kind in (OrderType.STOP, OrderType.STOP_LIMIT) else None,
        trail_offset=request.trail_offset if kind == OrderType.TRAILING_STOP else None,
        trail_percent=request.trail_percent if kind == OrderType.TRAILING_STOP else None,
        status=OrderStatus.WORKING,
        filled_quantity=Decimal(0),
        fills=[],
        created_at=now,
        expires_at=day_order_expiry(request.symbol, now) if request.time_in_force == TimeInForce.DAY else None,
    )


# ---------------------------------------------------------------------------- the pass


def run_pass(
    state: PaperAccountState, quotes: dict[str, Quote], now: datetime, settings: PaperSettings, only: str | None = None
) -> None:
    """One matching pass over the working orders (or over order ``only``), in creation order."""
    orders = [order for order in state.orders.values() if order.is_working and only in (None, order.order_id)]
    for order in sorted(orders, key=lambda order: order.created_at):  # stable: ties keep the store's order
        quote = quotes.get(order.symbol)
        if quote is not None:
            step(state, order, quote, now, settings)


def step(state: PaperAccountState, order: PaperOrder, quote: Quote, now: datetime, settings: PaperSettings) -> None:
    """Advance one working order at one quote."""
    if order.expires_at is not None and now >= order.expires_at:
        close(order, OrderStatus.EXPIRED, order.expires_at, "Day order expired at the close")
        return
    immediate = order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK)
    if not market_hours(order.symbol, now).is_open:
        if immediate:
            close(order, OrderStatus.CANCELLED, now, "The market is closed; immediate order cancelled")
        return
    if order.order_type in STOP_TYPES and not order.triggered:
        if not _triggers(order, quote):
            return
        order.triggered = True
    price = _execution_price(order, quote, settings)
    remaining = order.quantity - order.filled_quantity
    quantity = min(remaining, per_pass_liquidity(settings, order.symbol))
    if order.time_in_force == TimeInForce.FOK and (price is None or quantity < remaining):
        close(order, OrderStatus.CANCELLED, now, "Fill-or-kill: the whole quantity could not fill at once")
        return
    if price is not None:
        _execute(state, order, quantity, price, now, settings)
    if order.time_in_force == TimeInForce.IOC and order.is_working:
        close(order, OrderStatus.CANCELLED, now, f"Immediate-or-cancel: unfilled {order.remaining_quantity} cancelled")


def _triggers(order: PaperOrder, quote: Quote) -> bool:
    """Whether a stop order triggers at this quote (trailing: after ratcheting its anchor)."""
    buy = order.side == OrderSide.BUY
    if order.order_type == OrderType.TRAILING_STOP:
        if buy:
            order.trail_anchor = quote.ask if order.trail_anchor is None else min(order.trail_anchor, quote.ask)
            return quote.ask >= order.trail_anchor + _trail(order, order.trail_anchor)
        order.trail_anchor = quote.bid if order.trail_anchor is None else max(order.trail_anchor, quote.bid)
        return quote.bid <= order.trail_anchor - _trail(order, order.trail_anchor)
    stop = order.stop_price
    if stop is None:
        return False
    return quote.ask >= stop if buy else quote.bid <= stop


def _trail(order: PaperOrder, anchor: Decimal) -> Decimal:
    """How far the order's stop sits from its anchor: its offset, or its percent of the anchor."""
    return trail_distance(anchor, order.trail_offset, order.trail_percent)


def _execution_price(order: PaperOrder, quote: Quote, settings: PaperSettings) -> Decimal | None:
    if order.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        return limit_price_now(order, quote)
    return market_price(settings, order.side, quote)


def _execute(
    state: PaperAccountState,
    order: PaperOrder,
    quantity: Decimal,
    price: Decimal,
    now: datetime,
    settings: PaperSettings,
) -> None:
    """Fill ``quantity`` at ``price``, moving cash and the position; cancel if it cannot be afforded."""
    position = state.positions.get(order.symbol)
    if order.side == OrderSide.SELL:
        held = position.quantity if position is not None else Decimal(0)
        quantity = min(quantity, held)  # defensive: placement already refused selling more than held
        if quantity <= 0:
            close(order, OrderStatus.CANCELLED, now, f"Cancelled: no {order.symbol} left to sell")
            return
    notional = quantity * price
    fee = commission(settings, notional)
    if order.side == OrderSide.BUY and notional + fee > state.cash:
        close(order, OrderStatus.CANCELLED, now, f"Cancelled: not enough cash to buy {quantity} at {price}")
        return
    _apply_to_account(state, order, quantity, price, notional, fee)
    order.fills.append(Fill(f"{order.order_id}-{len(order.fills) + 1}", quantity, price, now, fee))
    order.filled_quantity += quantity
    if order.filled_quantity >= order.quantity:
        close(order, OrderStatus.FILLED, now, "")
    else:
        order.status = OrderStatus.PARTIALLY_FILLED


def _apply_to_account(
    state: PaperAccountState, order: PaperOrder, quantity: Decimal, price: Decimal, notional: Decimal, fee: Decimal
) -> None:
    position = state.positions.get(order.symbol)
    if order.side == OrderSide.BUY:
        state.cash -= notional + fee
        if position is None or position.quantity <= 0:
            state.positions[order.symbol] = PaperPosition(quantity=quantity, average_price=price)
        else:
            total = position.quantity + quantity
            cost = position.quantity * position.average_price + notional
            position.average_price = (cost / total).quantize(STORED_SCALE)
            position.quantity = total
    elif position is not None:
        state.cash += notional - fee
        position.quantity -= quantity
        if position.quantity <= 0:
            del state.positions[order.symbol]


def close(order: PaperOrder, status: OrderStatus, at: datetime, detail: str) -> None:
    """Move a working order to a terminal status."""
    order.status = status
    order.closed_at = at
    if detail:
        order.status_detail = detail
