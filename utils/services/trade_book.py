"""What the broker reported, applied to our orders, fills and trades (the caller commits).

A fill is recorded once however often the broker reports it (unique per order and broker fill
id). A trade's numbers are always recomputed from its orders, never incremented, so applying
the same report twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from decimal import Decimal
from typing import Protocol

from models import Fill, Order, Trade
from utils.brokers.base import BrokerOrder
from utils.brokers.base import Fill as BrokerFill
from utils.enums import EXIT_PURPOSES, OrderPurpose, OrderSide, OrderStatus, TradeStatus
from utils.money import utcnow
from utils.services import order_states

ZERO = Decimal(0)
SHORT_SIDES = frozenset({OrderSide.SELL_SHORT})


def apply_report(order: Order, report: BrokerOrder) -> bool:
    """Bring ``order`` (and its trade) up to date with the broker's report; True if anything changed."""
    target = _reported_status(order, report)
    if not order_states.can_move(OrderStatus(order.status), target):  # refuse before changing anything
        order_states.move(order, target)
    if order.broker_order_id is None:
        order.broker_order_id = report.broker_order_id
    added = record_fills(order, report.fills)
    before = (order.status, order.filled_quantity, order.average_fill_price)
    if report.filled_quantity >= order.filled_quantity:  # a stale report never undoes a fill
        order.filled_quantity = report.filled_quantity
        order.average_fill_price = report.average_fill_price or order.average_fill_price
    order.remaining_quantity = max(order.quantity - order.filled_quantity, ZERO)
    order.fees = max(report.fees, sum((fill.commission for fill in order.fills), ZERO))
    order_states.move(order, target, report.status_detail or None)
    if order.trade is not None:
        settle(order.trade)
    return bool(added) or before != (order.status, order.filled_quantity, order.average_fill_price)


def apply_replacement(old: Order, old_report: BrokerOrder | None, new: Order, new_report: BrokerOrder) -> None:
    """The broker replaced ``old`` by ``new``: keep what ``old`` filled before it went, then follow ``new``.

    ``old_report`` is the broker's last word on the old order: it may have filled in part in the
    moment before the replace (a REPLACED order is never polled again, so those fills are recorded
    now or never). None where the replace keeps the order id: the new order's report carries them.
    """
    if old_report is not None:
        apply_report(old, replace(old_report, status=OrderStatus.REPLACED))
    order_states.move(old, OrderStatus.REPLACED, f"Replaced by order {new.id}.")
    apply_report(new, new_report)


def record_fills(order: Order, reported: Iterable[BrokerFill]) -> list[Fill]:
    """Add the fills not recorded yet (matched by broker fill id)."""
    known = {fill.broker_fill_id for fill in order.fills}
    added = []
    for fill in reported:
        if fill.fill_id in known:
            continue
        known.add(fill.fill_id)
        row = Fill(
            broker_fill_id=fill.fill_id,
            quantity=fill.quantity,
            price=fill.price,
            commission=fill.commission,
            filled_at=fill.time,
        )
        order.fills.append(row)
        added.append(row)
    return added


def settle(trade: Trade) -> None:
    """Recompute a trade's quantities, prices, fees, status and realized P&L from its orders."""
    entries = [o for o in trade.orders if o.purpose == OrderPurpose.ENTRY]
    exits = [o for o in trade.orders if o.purpose in EXIT_PURPOSES]
    trade.filled_quantity, trade.average_fill_price = _filled(entries)
    trade.exit_filled_quantity, trade.exit_average_price = _filled(exits)
    trade.remaining_quantity = sum((o.remaining_quantity or ZERO for o in _live(entries)), ZERO)
    trade.fees = sum((o.fees for o in trade.orders), ZERO)
    if trade.opened_at is None and trade.filled_quantity > 0:
        trade.opened_at = utcnow()
    trade.status = _trade_status(trade, entries, exits)
    if trade.status == TradeStatus.CLOSED and trade.closed_at is None:
        trade.closed_at = utcnow()
        trade.close_price = trade.exit_average_price
        trade.realized_pnl = realized_pnl(trade)


def is_long(trade: Trade) -> bool:
    """True for a long (bought) trade, False for a short."""
    return trade.side not in SHORT_SIDES


class Holding(Protocol):
    """Entered and exited quantities (a Trade, or a row with the same column names)."""

    @property
    def filled_quantity(self) -> Decimal: ...
    @property
    def exit_filled_quantity(self) -> Decimal: ...


def open_quantity(trade: Holding) -> Decimal:
    """What the trade still holds: entered minus exited."""
    return max(trade.filled_quantity - trade.exit_filled_quantity, ZERO)


def realized_pnl(trade: Trade) -> Decimal:
    """Profit of the exited quantity after every fee of the trade (negative for a loss)."""
    if trade.average_fill_price is None or trade.exit_average_price is None:
        return -trade.fees
    direction = -1 if trade.side in SHORT_SIDES else 1
    gross = (trade.exit_average_price - trade.average_fill_price) * trade.exit_filled_quantity * direction
    return gross - trade.fees


def unrealized_pnl(trade: Trade, price: Decimal) -> Decimal:
    """Profit of the open quantity if it were closed at ``price`` (fees not included)."""
    if trade.average_fill_price is None:
        return ZERO
    direction = -1 if trade.side in SHORT_SIDES else 1
    return (price - trade.average_fill_price) * open_quantity(trade) * direction


def _reported_status(order: Order, report: BrokerOrder) -> OrderStatus:
    """The broker's status, except that a report may not take a cancel we asked for back to WORKING."""
    status = report.status
    if order.status == OrderStatus.CANCEL_PENDING and order_states.is_live(status):
        return OrderStatus.CANCEL_PENDING
    if status == OrderStatus.SUBMITTED and order.status != OrderStatus.SUBMITTED:
        return OrderStatus(order.status)
    if status == OrderStatus.WORKING and order.filled_quantity > 0:
        return OrderStatus.PARTIALLY_FILLED
    return status


def _filled(orders: list[Order]) -> tuple[Decimal, Decimal | None]:
    quantity = sum((o.filled_quantity for o in orders), ZERO)
    if quantity == 0:
        return ZERO, None
    value = sum((o.filled_quantity * (o.average_fill_price or ZERO) for o in orders), ZERO)
    return quantity, value / quantity


def _live(orders: list[Order]) -> list[Order]:
    return [o for o in orders if order_states.is_live(OrderStatus(o.status))]


def _trade_status(trade: Trade, entries: list[Order], exits: list[Order]) -> TradeStatus:
    entry_live = bool(_live(entries))
    if trade.filled_quantity == 0:
        if entry_live:
            return TradeStatus.PENDING
        rejected = all(o.status == OrderStatus.REJECTED for o in entries)
        return TradeStatus.FAILED if rejected else TradeStatus.CANCELLED
    if not entry_live and trade.exit_filled_quantity >= trade.filled_quantity:
        return TradeStatus.CLOSED
    if any(o.purpose == OrderPurpose.EXIT for o in _live(exits)):
        return TradeStatus.CLOSING
    return TradeStatus.PARTIALLY_FILLED if entry_live else TradeStatus.OPEN


def live_exit(trade: Trade) -> Order | None:
    """The trade's one live exit order (protective or closing), if any."""
    return next((o for o in trade.orders if o.purpose in EXIT_PURPOSES and order_states.is_live(o.status)), None)
