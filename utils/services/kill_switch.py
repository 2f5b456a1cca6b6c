"""Restricting trading, and what a restriction does to entries already accepted.

Setting the platform or one user to HALTED or REDUCING also cancels that scope's queued entries
(accepted, not yet claimed by a worker) at once, and, as an explicit option, its working entry
orders at the broker (``cancel_working_entries``: one broker call per order, so the admin area
runs it in a worker). An entry a worker claims after the change is refused there
(``orders.submit``), so nothing accepted before a halt is sent after it. Exits are never touched:
protective and closing orders run whatever the state.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Select

from models import BrokerConnection, Order, User
from utils.enums import OrderPurpose, OrderStatus, TradingState
from utils.exceptions import ArbionError
from utils.extensions import db
from utils.observability import get_logger
from utils.services import audit, connections, notifications, order_states, order_tracking, trading_state
from utils.services.trading_state import TradingStatus

log = get_logger(__name__)
# Entry orders resting at the broker: what "cancel working entries" sends a cancel for.
WORKING_AT_BROKER = (OrderStatus.SUBMITTED, OrderStatus.WORKING, OrderStatus.PARTIALLY_FILLED)


@dataclass(frozen=True)
class Restriction:
    """A trading state just set, and how many queued entries it cancelled."""

    status: TradingStatus
    queued_cancelled: int


@dataclass
class CancelReport:
    """What a pass over working entries did at the broker."""

    cancelled: int = 0
    failed: int = 0


def set_platform_state(actor: User | None, state: TradingState, reason: str = "", *, source: str) -> Restriction:
    """Flip the platform-wide kill switch (audited); a restriction cancels every queued entry."""
    status = trading_state.set_global_trading_state(actor, state, reason, source=source)
    return Restriction(status, _cancel_queued_for(status, None))


def set_user_state(actor: User | None, user: User, state: TradingState, reason: str = "") -> Restriction:
    """Set one user's trading state (audited); a restriction cancels the user's queued entries."""
    status = trading_state.set_user_trading_state(actor, user, state, reason)
    return Restriction(status, _cancel_queued_for(status, user.id))


def _cancel_queued_for(status: TradingStatus, user_id: int | None) -> int:
    if status.state == TradingState.ACTIVE:
        return 0
    return cancel_queued_entries(user_id, _why(status))


def cancel_queued_entries(user_id: int | None, why: str) -> int:
    """Cancel the queued entries (PENDING_SUBMIT) of one user, or of everyone for None; each is
    audited and each owner notified once (commit). An entry a worker claimed first is left to the
    worker, which refuses it under the new state. Returns how many were cancelled."""
    cancelled: Counter[int] = Counter()
    for order in db.session.scalars(_entries(user_id, (OrderStatus.PENDING_SUBMIT,))).all():
        if order_tracking.cancel_unsent(order, f"Cancelled before it was sent: {why}"):
            audit.record("order.cancel", subject=order, details={"sent": False, "reason": why})
            cancelled[order.user_id] += 1
    for owner, count in cancelled.items():
        message = f"{count} entry order(s) waiting to be sent were cancelled: {why}"
        notifications.notify(owner, "entries_cancelled", message, level="warning")
    db.session.commit()
    if cancelled:
        log.warning("trading.queued_entries_cancelled", user_id=user_id, count=sum(cancelled.values()))
    return sum(cancelled.values())


def working_entry_ids(user_id: int | None) -> list[int]:
    """Ids of the entry orders resting at a broker for one user, or for everyone for None."""
    statement = _entries(user_id, WORKING_AT_BROKER).where(Order.broker_order_id.is_not(None))
    return [order.id for order in db.session.scalars(statement)]


def cancel_working_entries(user_id: int | None, why: str) -> CancelReport:
    """Ask the broker to cancel every working entry of one user (or everyone): each order on its
    own, audited, committed; one failure never stops the others. Exits are left alone."""
    report = CancelReport()
    for order_id in working_entry_ids(user_id):
        try:
            _cancel_at_broker(db.session.get_one(Order, order_id), why)
            report.cancelled += 1
        except ArbionError as exc:
            db.session.rollback()
            report.failed += 1
            log.warning("trading.working_entry_cancel_failed", order_id=order_id, error=exc.code)
    return report


def _cancel_at_broker(order: Order, why: str) -> None:
    if not order_states.is_live(OrderStatus(order.status)):
        return  # it ended since the list was read
    connection = db.session.get_one(BrokerConnection, order.connection_id)
    broker, account = connections.broker_for(connection), connections.trading_account_id(connection)
    audit.record("order.cancel", subject=order, details={"sent": True, "reason": why})
    order_tracking.cancel_at_broker(order, broker, account, f"Cancelled: {why}")


def _entries(user_id: int | None, statuses: tuple[OrderStatus, ...]) -> Select[tuple[Order]]:
    statement = db.select(Order).where(Order.purpose == OrderPurpose.ENTRY, Order.status.in_(statuses))
    if user_id is not None:
        statement = statement.where(Order.user_id == user_id)
    return statement.order_by(Order.id)


def _why(status: TradingStatus) -> str:
    scope = "trading halted" if status.state == TradingState.HALTED else "trading restricted to exits"
    return f"{scope} ({status.reason})" if status.reason else scope
