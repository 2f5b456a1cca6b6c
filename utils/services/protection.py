"""Protective stops at the broker: placed on entry fills, resized as fills arrive, cancelled before an exit.

Where the broker can hold a stop (capabilities ``native_stop`` or ``stop_limit``), the trade's
stop-loss is placed there, sized to the filled quantity, and the trade is NATIVE; a trailing
stop alone (by amount or by percent) is held natively where the broker trails (``trailing_stop``).
Otherwise the stop-loss monitor emulates it (EMULATED). Take-profits are emulated by the monitor
(one live exit per trade leaves no room for a second resting order). A trade with no stop-loss, take-profit or trailing
stop is UNPROTECTED and says so.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Row, Select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from models import Order, Trade, User
from utils.brokers.base import Broker, Capabilities
from utils.enums import (
    LIVE_ORDER_STATUSES,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    ProtectionMode,
    Provider,
    TimeInForce,
    TradeStatus,
)
from utils.exceptions import ArbionError, InvalidInputError
from utils.extensions import db
from utils.money import decimal_text, utcnow
from utils.observability import get_logger
from utils.risk.stop_changes import StopChange, stop_change_problem
from utils.risk.stops import PositionSide
from utils.services import (
    audit,
    connections,
    notifications,
    order_checks,
    order_states,
    order_tracking,
    orders,
    risk,
    trade_book,
)

log = get_logger(__name__)
STOP_LIMIT_ALLOWANCE = Decimal("0.01")  # a stop-limit's limit sits 1% beyond its stop, so gaps still fill
UNPROTECTED = "UNPROTECTED: this position has no stop-loss, take-profit or trailing stop."


def protect(trade: Trade) -> bool:
    """Make the trade's protection match its open quantity (commits). False if a broker stop was
    wanted but could not be placed: the trade is then EMULATED and the user is told."""
    quantity = trade_book.open_quantity(trade)
    if trade.stop_loss_price is None and not has_trailing_stop(trade):
        emulated = trade.take_profit_price is not None
        _set_mode(trade, ProtectionMode.EMULATED if emulated else ProtectionMode.NONE, "" if emulated else UNPROTECTED)
        return True
    broker = connections.broker_for(orders.connection_of(trade))
    if broker_stop_type(trade, broker.capabilities) is None or quantity <= 0:
        _set_mode(trade, ProtectionMode.EMULATED, "Stop watched by the monitor.")
        return True
    current = protective_order(trade)
    if _covers(current, trade) or trade.status == TradeStatus.CLOSING:
        return True
    try:
        if current is not None and not cancel_protection(trade, broker):
            return True  # the old stop filled or is still cancelling: the next pass resizes
        return _place_stop(trade, broker, trade_book.open_quantity(trade))
    except ArbionError as exc:
        db.session.rollback()
        _set_mode(trade, ProtectionMode.EMULATED, f"Broker stop not placed ({exc.message}); the monitor watches it.")
        _tell(trade, f"the broker refused the protective stop ({exc.message})")
        return False


class RestingStop(Protocol):
    """The terms of a live broker stop (an Order, or a row of ``live_stop_orders``)."""

    @property
    def quantity(self) -> Decimal: ...
    @property
    def order_type(self) -> str: ...
    @property
    def stop_price(self) -> Decimal | None: ...
    @property
    def trail_offset(self) -> Decimal | None: ...
    @property
    def trail_percent(self) -> Decimal | None: ...


class StopTarget(trade_book.Holding, Protocol):
    """What a trade's broker stop must match (a Trade, or a row with the same column names)."""

    @property
    def stop_loss_price(self) -> Decimal | None: ...
    @property
    def trailing_stop_offset(self) -> Decimal | None: ...
    @property
    def trailing_stop_percent(self) -> Decimal | None: ...
    @property
    def protection_mode(self) -> str: ...
    @property
    def protection_detail(self) -> str: ...
    @property
    def breached_at(self) -> datetime | None: ...


def live_stop_orders() -> Select[Any]:
    """The live stop-loss orders at brokers, one row each (a trade has at most one): their trade and terms."""
    return db.select(
        Order.trade_id, Order.quantity, Order.order_type, Order.stop_price, Order.trail_offset, Order.trail_percent
    ).where(Order.purpose == OrderPurpose.STOP_LOSS, Order.status.in_(LIVE_ORDER_STATUSES))


def ensure_all(connection_ids: list[int] | None = None) -> list[int]:
    """Watchdog: re-place a NATIVE trade's missing broker stop, resize one that no longer fits.

    Every protected trade is checked as a plain row beside its live stop (two statements however
    many there are); only the misfits are loaded and mended. Returns the ids of trades whose stop
    could not be re-placed: the caller closes them.
    """
    failed = []
    for trade in _misfits(connection_ids):
        if _stop_fits(trade, protective_order(trade)):
            continue  # mended meanwhile
        was_native = trade.protection_mode == ProtectionMode.NATIVE
        if not protect(trade) and was_native:
            failed.append(trade.id)
    return failed


def _misfits(connection_ids: list[int] | None) -> list[Trade]:
    """Open trades with a stop whose broker stop does not fit, with their orders."""
    live = live_stop_orders().subquery()
    resting = (live.c.quantity, live.c.order_type, live.c.stop_price, live.c.trail_offset, live.c.trail_percent)
    statement = (
        db.select(*_TARGET_COLUMNS, live.c.trade_id.label("stop_trade_id"), *resting)
        .outerjoin(live, live.c.trade_id == Trade.id)
        .where(
            Trade.status.in_([TradeStatus.OPEN, TradeStatus.PARTIALLY_FILLED]),
            db.or_(
                Trade.stop_loss_price.is_not(None),
                Trade.trailing_stop_offset.is_not(None),
                Trade.trailing_stop_percent.is_not(None),
            ),
        )
    )
    if connection_ids is not None:
        statement = statement.where(Trade.connection_id.in_(connection_ids))
    ids = [row.id for row in db.session.execute(statement) if not _stop_fits(row, _resting(row))]
    if not ids:
        return []
    loaded = db.select(Trade).where(Trade.id.in_(ids)).options(selectinload(Trade.orders)).order_by(Trade.id)
    return list(db.session.scalars(loaded))


_TARGET_COLUMNS = (
    Trade.id,
    Trade.filled_quantity,
    Trade.exit_filled_quantity,
    Trade.stop_loss_price,
    Trade.trailing_stop_offset,
    Trade.trailing_stop_percent,
    Trade.protection_mode,
    Trade.protection_detail,
    Trade.breached_at,
)


def _resting(row: Row[Any]) -> RestingStop | None:
    """The live stop in a ``_misfits`` row (None when the trade has none)."""
    return row if row.stop_trade_id is not None else None


def _stop_fits(trade: StopTarget, current: RestingStop | None) -> bool:
    """True when the trade needs nothing: emulated on purpose, or its broker stop covers it exactly."""
    if trade.protection_mode == ProtectionMode.EMULATED and trade.protection_detail.startswith("Broker stop not"):
        return True  # already failed once: the monitor emulates it; retrying every pass would spam the broker
    if trade.breached_at is not None:
        return True  # the monitor is closing it: a stop placed now would only race the exit
    if trade.protection_mode == ProtectionMode.EMULATED and current is None:
        return True
    return _covers(current, trade)


def _covers(stop: RestingStop | None, trade: StopTarget) -> bool:
    """The live broker stop matches the trade: its whole open quantity, at its stop or trail."""
    if stop is None or stop.quantity != trade_book.open_quantity(trade):
        return False
    if stop.order_type == OrderType.TRAILING_STOP:
        trail = (stop.trail_offset, stop.trail_percent)
        return trade.stop_loss_price is None and trail == (trade.trailing_stop_offset, trade.trailing_stop_percent)
    return stop.stop_price == trade.stop_loss_price


def check_stop_change(trade: Trade, stop_price: Decimal, actor: User) -> None:
    """Refuse a new stop-loss for the trade unless the stop rule allows it against the market now
    (audited; InvalidInputError on ``stop_price`` with the reason); see utils/risk/stop_changes.py."""
    connection = orders.connection_of(trade)
    broker = connections.broker_for(connection)
    limits = risk.limits_for(db.session.get_one(User, trade.user_id))
    change = StopChange(
        symbol=trade.symbol,
        side=PositionSide.of_entry(OrderSide(trade.side)),
        stop_price=stop_price,
        quote=order_checks.quote_or_none(Provider(connection.provider), broker, trade.symbol),
        price_increment=order_checks.price_increment_or_none(broker, trade.symbol, stop_price),
        max_distance_pct=limits.max_stop_distance_pct,
        max_quote_age_seconds=limits.max_quote_age_seconds,
        now=utcnow(),
    )
    problem = stop_change_problem(change)
    if problem is not None:
        details = {"reasons": [problem], "purpose": "stop_move", "stop_price": str(stop_price)[:40]}
        audit.record("risk.rejected", actor=actor, subject=trade, details=details)
        db.session.commit()
        raise InvalidInputError(problem, details={"field": "stop_price"})


def has_trailing_stop(trade: Trade) -> bool:
    """True when the trade has a trailing stop, by amount or by percent."""
    return trade.trailing_stop_offset is not None or trade.trailing_stop_percent is not None


def broker_stop_type(trade: Trade, capabilities: Capabilities) -> OrderType | None:
    """The order type the broker holds the trade's stop as, or None when the monitor must.

    A fixed stop-loss: STOP, else STOP_LIMIT. A trailing stop alone: TRAILING_STOP where the broker
    trails natively. With both, the fixed stop goes to the broker and the monitor trails.
    """
    if trade.stop_loss_price is not None:
        if capabilities.native_stop:
            return OrderType.STOP
        return OrderType.STOP_LIMIT if capabilities.stop_limit else None
    if has_trailing_stop(trade) and capabilities.trailing_stop:
        return OrderType.TRAILING_STOP
    return None


def protective_order(trade: Trade) -> Order | None:
    """The trade's live stop-loss order at the broker, if any."""
    return next(
        (
            o
            for o in trade.orders
            if o.purpose == OrderPurpose.STOP_LOSS and order_states.is_live(OrderStatus(o.status))
        ),
        None,
    )


def cancel_protection(trade: Trade, broker: Broker) -> bool:
    """Cancel the trade's live broker stop and wait for the broker's word; True if the trade may exit.

    False when the stop filled meanwhile (the trade is closed or reduced by it) or the cancel is not
    confirmed yet; the caller tries again on its next pass.
    """
    stop = protective_order(trade)
    if stop is None:
        return True
    if stop.broker_order_id is None:
        return False  # still being sent: cannot be cancelled yet
    account = connections.trading_account_id(orders.connection_of(stop))
    order_tracking.cancel_at_broker(stop, broker, account, "Cancelled to make way for an exit.")
    return stop.status == OrderStatus.CANCELLED and stop.filled_quantity == 0


def _place_stop(trade: Trade, broker: Broker, quantity: Decimal) -> bool:
    order_type = broker_stop_type(trade, broker.capabilities)
    assert order_type is not None  # nosec B101 # noqa: S101 - narrows the type: protect() checked it
    order_checks.check_exit(trade, OrderPurpose.STOP_LOSS, quantity)
    order = orders.new_exit_order(trade, OrderPurpose.STOP_LOSS, quantity)
    order.time_in_force, order.order_type = TimeInForce.GTC, order_type
    order.status, order.submitted_at = OrderStatus.SUBMITTED, utcnow()  # stored claimed: sent below, by us only
    if order_type == OrderType.TRAILING_STOP:
        order.trail_offset, order.trail_percent = trade.trailing_stop_offset, trade.trailing_stop_percent
        held = f"Trailing stop {_trail_words(trade)} behind the best price, held by the broker."
    else:
        order.stop_price = trade.stop_loss_price
        held = f"Stop at {trade.stop_loss_price} held by the broker."
    if order_type == OrderType.STOP_LIMIT and trade.stop_loss_price is not None:
        order.limit_price = _stop_limit(trade, trade.stop_loss_price)
    details = {"type": order_type.value, "stop": str(order.stop_price), "trail": str(order.trail_offset)}
    details["trail_percent"] = str(order.trail_percent)
    audit.record("protection.place", subject=trade, details=details | {"quantity": str(quantity)})
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # an exit went live meanwhile: the trade is closing, nothing to protect
        return True
    sent = orders.send_claimed(order)
    if sent.status in (OrderStatus.WORKING, OrderStatus.SUBMITTED, OrderStatus.FILLED):
        _set_mode(trade, ProtectionMode.NATIVE, held)
        return True
    detail = sent.status_detail
    _set_mode(trade, ProtectionMode.EMULATED, f"Broker stop not accepted ({detail}); the monitor watches it.")
    _tell(trade, f"the broker did not accept the protective stop ({detail})")
    return False


def _trail_words(trade: Trade) -> str:
    """The trailing distance as a trader reads it: "2.5" or "5%"."""
    if trade.trailing_stop_percent is not None:
        return f"{decimal_text(trade.trailing_stop_percent)}%"
    return decimal_text(trade.trailing_stop_offset or Decimal(0))


def _stop_limit(trade: Trade, stop: Decimal) -> Decimal:
    long = trade_book.is_long(trade)
    factor = (1 - STOP_LIMIT_ALLOWANCE) if long else (1 + STOP_LIMIT_ALLOWANCE)
    return (stop * factor).quantize(Decimal("0.01"))


def _set_mode(trade: Trade, mode: ProtectionMode, detail: str) -> None:
    trade.protection_mode, trade.protection_detail = mode, detail[:500]
    db.session.commit()


def _tell(trade: Trade, problem: str) -> None:
    message = f"{trade.symbol}: {problem}. The stop-loss monitor watches this position instead."
    notifications.notify(trade.user_id, "protection_failed", message, level="warning", subject=trade)
    db.session.commit()
