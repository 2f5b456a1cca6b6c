"""Sending and following orders with their protection: what the order tasks call.

After an entry fills (in part or in full), its protective stop is placed or resized at once, so
a filled position is unprotected for no longer than one broker round trip.
"""

from __future__ import annotations

from utils.enums import OrderPurpose
from utils.money import utcnow
from utils.services import monitor, order_tracking, orders, protection


def send(order_id: int) -> None:
    """Send one stored order (once), then protect what its fills opened."""
    order = orders.submit(order_id)
    opened = order is not None and order.purpose == OrderPurpose.ENTRY and order.filled_quantity > 0
    if opened and order is not None and order.trade is not None:
        protection.protect(order.trade)


def follow_connection(connection_id: int) -> tuple[order_tracking.TrackingReport, list[monitor.Breach]]:
    """``follow_orders`` for one connection: its live orders, then the watchdog over its trades.

    Also hands out again, at once, breached trades whose exit this pass saw end unfilled (a sender
    killed before the broker saw it, given up after ORDER_LOOKUP_GIVE_UP): one cycle sooner.
    """
    started = utcnow()
    report = order_tracking.track_connection(connection_id)
    return report, monitor.watchdog([connection_id]) + monitor.failed_exits(connection_id, started)


def follow_orders() -> tuple[order_tracking.TrackingReport, list[monitor.Breach]]:
    """One tracking pass over live orders, then the protection watchdog over what it found.

    Returns the report and the trades the caller must close (``monitor.close_breached``): those
    whose broker stop was lost and could not be re-placed.
    """
    report = order_tracking.track_all()
    return report, monitor.watchdog(None)
