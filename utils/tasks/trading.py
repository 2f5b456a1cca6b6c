"""Order tasks: send a stored order once, and follow live orders until they are done."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from kombu.exceptions import OperationalError as QueueError

from utils.exceptions import BrokerTemporaryError
from utils.observability import get_logger
from utils.services import execution, orders

log = get_logger(__name__)

SUBMIT_RETRIES = 8


@shared_task(
    bind=True,
    name="trading.submit_order",
    acks_late=True,  # a worker lost mid-task gets the message redelivered; the claim stops a resend
    reject_on_worker_lost=True,
    max_retries=SUBMIT_RETRIES,
    ignore_result=True,
)
def submit_order(self: Task, order_id: int) -> None:
    """Send one stored order; retry with backoff while the broker is busy or unreachable."""
    try:
        execution.send(order_id)
    except BrokerTemporaryError as exc:
        wait = exc.details.get("retry_after") or min(2**self.request.retries, 60)
        raise self.retry(exc=exc, countdown=float(wait)) from exc


@shared_task(name="trading.track_orders", ignore_result=True)
def track_orders() -> dict[str, Any]:
    """Refresh live orders, resize protection, and (re-)send intents waiting for a worker."""
    for order_id in orders.waiting_to_be_sent():
        submit_order.delay(order_id)
    report, exits = execution.follow_orders()
    for order_id in exits:
        submit_order.delay(order_id)
    return vars(report)


def enqueue_submit(order_id: int) -> None:
    """Hand a committed order to a worker. Should the queue fail now, the order stays PENDING_SUBMIT
    and ``track_orders`` sends it once the queue is back: the intent is stored, never lost."""
    try:
        submit_order.delay(order_id)
    except QueueError as exc:
        log.warning("orders.enqueue_deferred", order_id=order_id, error=type(exc).__name__)
