"""The order state machine: which status may follow which, and the one function that moves an order.

PENDING_SUBMIT  the intent is stored; nothing has been sent.
SUBMITTED       a worker claimed the order and is sending it (or sent it and awaits the answer);
                a SUBMITTED order without a broker id is resolved by reconciliation, never resent.
WORKING, PARTIALLY_FILLED, FILLED, CANCEL_PENDING, CANCELLED, REJECTED, EXPIRED, REPLACED
                what the broker reports.
UNKNOWN         a write whose outcome we did not see; only reconciliation moves it on.

SUBMITTED → PENDING_SUBMIT is allowed for one case only: the broker provably never saw the
request (a connection refused before sending), so it may be sent again later.
"""

from __future__ import annotations

from models import Order
from utils.enums import TERMINAL_ORDER_STATUSES, OrderStatus
from utils.exceptions import IllegalTransitionError
from utils.money import utcnow

S = OrderStatus
_AT_BROKER = frozenset({S.WORKING, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED, S.REPLACED})

ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING_SUBMIT: frozenset({S.SUBMITTED, S.CANCELLED, S.REJECTED}),
    S.SUBMITTED: _AT_BROKER | {S.PENDING_SUBMIT, S.CANCEL_PENDING, S.UNKNOWN},
    S.WORKING: _AT_BROKER - {S.WORKING} | {S.CANCEL_PENDING, S.UNKNOWN},
    S.PARTIALLY_FILLED: _AT_BROKER - {S.WORKING, S.REJECTED} | {S.CANCEL_PENDING, S.UNKNOWN},
    S.CANCEL_PENDING: _AT_BROKER | {S.UNKNOWN},
    S.UNKNOWN: _AT_BROKER | {S.CANCEL_PENDING},
    **{status: frozenset() for status in TERMINAL_ORDER_STATUSES},
}


def can_move(current: OrderStatus, new: OrderStatus) -> bool:
    """Whether ``new`` may follow ``current`` (staying put is always allowed: polls repeat)."""
    return new == current or new in ALLOWED[current]


def move(order: Order, new: OrderStatus, detail: str | None = None) -> bool:
    """Move ``order`` to ``new`` (the caller commits); True if the status changed.

    IllegalTransitionError for a move the machine does not allow, e.g. out of a terminal status.
    """
    current = OrderStatus(order.status)
    if not can_move(current, new):
        raise IllegalTransitionError(
            f"Order {order.id} cannot go from {current.value} to {new.value}.",
            details={"order_id": order.id, "from": current.value, "to": new.value},
        )
    if detail is not None:
        order.status_detail = detail[:500]
    if new == current:
        return False
    order.status = new
    if new in TERMINAL_ORDER_STATUSES and order.closed_at is None:
        order.closed_at = utcnow()
    return True


def is_live(status: OrderStatus) -> bool:
    """Not terminal: the order may still fill or change."""
    return status not in TERMINAL_ORDER_STATUSES
