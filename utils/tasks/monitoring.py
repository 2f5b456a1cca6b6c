"""The stop-loss monitor on Celery Beat: one cycle per STOP_MONITOR_INTERVAL, fanned out by chunks."""

from __future__ import annotations

import uuid

from celery import shared_task
from flask import current_app

from utils.services import monitor
from utils.tasks.trading import submit_order


@shared_task(name="monitoring.stop_loss_cycle", ignore_result=True)
def stop_loss_cycle() -> int:
    """Start one monitor cycle: run it here, or fan it out per connection chunk. Returns the chunks."""
    chunks = monitor.connection_chunks(current_app.config["STOP_MONITOR_CHUNK_SIZE"])
    cycle_key = uuid.uuid4().hex[:16]
    if len(chunks) <= 1:
        _send(monitor.run_cycle(chunks[0] if chunks else [], cycle_key))
        return len(chunks)
    for chunk in chunks:
        stop_loss_chunk.delay(chunk, cycle_key)
    return len(chunks)


@shared_task(name="monitoring.stop_loss_chunk", ignore_result=True)
def stop_loss_chunk(connection_ids: list[int], cycle_key: str) -> None:
    """One chunk of a fanned-out cycle."""
    _send(monitor.run_cycle(connection_ids, cycle_key))


def _send(result: monitor.CycleResult) -> None:
    for order_id in result.exit_order_ids:
        submit_order.delay(order_id)
