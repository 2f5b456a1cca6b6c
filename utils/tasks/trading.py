"""Order tasks: send a stored order once, and follow live orders until they are done."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from kombu.exceptions import OperationalError as QueueError

from utils.exceptions import BrokerTemporaryError
from utils.observability import get_logger
from utils.services import execution, kill_switch, monitor, order_tracking, orders, task_locks

log = get_logger(__name__)

SUBMIT_RETRIES = 8
# A periodic pass over one connection's broker (tracking, a monitor chunk): generous for a slow
# broker's retried reads, bounded so a hung one frees its worker process (and its pass lock).
PASS_SOFT_LIMIT, PASS_HARD_LIMIT = 120, 150


@shared_task(
    bind=True,
    name="trading.submit_order",
    acks_late=True,  # a worker lost mid-task gets the message redelivered; the claim stops a resend
    reject_on_worker_lost=True,
    max_retries=SUBMIT_RETRIES,
    ignore_result=True,
    # One broker write (connect + read timeout) and a token refresh fit well inside; a send cut off
    # stays SUBMITTED without a broker id, which the tracker looks up after ORDER_SEND_GRACE.
    soft_time_limit=30,
    time_limit=45,
)
def submit_order(self: Task, order_id: int) -> None:
    """Send one stored order; retry with backoff while the broker is busy or unreachable."""
    try:
        execution.send(order_id)
    except BrokerTemporaryError as exc:
        raise self.retry(exc=exc, countdown=_backoff(exc, self.request.retries)) from exc


def _backoff(exc: BrokerTemporaryError, retries: int) -> float:
    """Seconds before the next send: what the broker asked for, else doubling up to a minute."""
    return float(exc.details.get("retry_after") or min(2**retries, 60))


@shared_task(
    name="trading.track_orders", ignore_result=True, soft_time_limit=PASS_SOFT_LIMIT, time_limit=PASS_HARD_LIMIT
)
def track_orders() -> int:
    """(Re-)send intents waiting for a worker, then follow live orders: one task per connection, so a
    slow broker holds up only its own. Returns how many connections were handed out."""
    for order_id in orders.waiting_to_be_sent():
        submit_order.delay(order_id)
    connection_ids = order_tracking.connections_with_live_orders()
    for connection_id in connection_ids:
        track_connection.delay(connection_id)
    return len(connection_ids)


@shared_task(
    name="trading.track_connection", ignore_result=True, soft_time_limit=PASS_SOFT_LIMIT, time_limit=PASS_HARD_LIMIT
)
def track_connection(connection_id: int) -> dict[str, Any]:
    """Refresh one connection's live orders and resize its protection (skipped while an earlier pass
    over it still runs); send the exits the watchdog decided."""
    with task_locks.one_at_a_time(f"track:{connection_id}") as mine:
        if not mine:
            return {"skipped": True}
        report, breaches = execution.follow_connection(connection_id)
    close_positions(breaches)
    return vars(report)


@shared_task(
    name="trading.close_position",
    acks_late=True,  # a worker lost mid-task gets the message redelivered; the trade's claim stops a second exit
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=30,
    time_limit=45,
)
def close_position(trade_id: int, reason: str) -> None:
    """Close one breached trade (the monitor's or the watchdog's decision) and send its exit at once,
    in this task: no second trip through the queue between a breach and the broker. A busy broker
    hands the exit to ``submit_order`` and its backoff."""
    exit_id = monitor.close_breached(monitor.Breach(trade_id, reason))
    if exit_id is None:
        return
    try:
        execution.send(exit_id)
    except BrokerTemporaryError as exc:
        submit_order.apply_async((exit_id,), countdown=_backoff(exc, 0))


def close_positions(breaches: list[monitor.Breach]) -> None:
    """One ``close_position`` task per breach: they close in parallel, each exactly once. Published
    through one producer (a thousand breaches cost one broker connection, not a thousand)."""
    if not breaches:
        return
    with close_position.app.producer_or_acquire() as producer:
        for breach in breaches:
            close_position.apply_async((breach.trade_id, breach.reason), producer=producer)


@shared_task(
    name="trading.cancel_working_entries",
    ignore_result=True,
    soft_time_limit=PASS_SOFT_LIMIT,
    time_limit=PASS_HARD_LIMIT,
)
def cancel_working_entries(user_id: int | None, reason: str) -> dict[str, int]:
    """After a halt: cancel the working entry orders of one user (or of everyone) at their brokers."""
    return vars(kill_switch.cancel_working_entries(user_id, reason or "trading halted"))


def enqueue_submit(order_id: int) -> None:
    """Hand a committed order to a worker. Should the queue fail now, the order stays PENDING_SUBMIT
    and ``track_orders`` sends it once the queue is back: the intent is stored, never lost."""
    try:
        submit_order.delay(order_id)
    except QueueError as exc:
        log.warning("orders.enqueue_deferred", order_id=order_id, error=type(exc).__name__)
