"""The stop-loss monitor on Celery Beat: one cycle per STOP_MONITOR_INTERVAL slot, fanned out by chunks.

Beat sends the cycle at the start of each slot (``schedule.SlotSchedule``, on_slot=True) and it
expires within the slot, so the cycle key derived from the clock here is the slot it was sent for and
the slot runs once however many beats send it. A cycle asked for by hand gets a key of its own.
"""

from __future__ import annotations

import uuid

from celery import shared_task
from flask import current_app

from utils.money import utcnow
from utils.services import monitor
from utils.tasks.trading import submit_order


@shared_task(name="monitoring.stop_loss_cycle", ignore_result=True)
def stop_loss_cycle(on_slot: bool = False) -> int:
    """Start one cycle (beat's: the current slot's): run it here, or fan it out per connection chunk.
    Returns the chunks."""
    chunks = monitor.connection_chunks(current_app.config["STOP_MONITOR_CHUNK_SIZE"])
    interval = current_app.config["STOP_MONITOR_INTERVAL"]
    cycle_key = monitor.slot_key(utcnow(), interval) if on_slot else uuid.uuid4().hex[:16]
    if len(chunks) <= 1:
        _send(monitor.run_cycle(chunks[0] if chunks else [], cycle_key))
        return len(chunks)
    for part, chunk in enumerate(chunks, start=1):
        stop_loss_chunk.delay(chunk, cycle_key, part)
    return len(chunks)


@shared_task(name="monitoring.stop_loss_chunk", ignore_result=True)
def stop_loss_chunk(connection_ids: list[int], cycle_key: str, part: int = 0) -> None:
    """One chunk (``part``) of a fanned-out cycle."""
    _send(monitor.run_cycle(connection_ids, cycle_key, part))


def _send(result: monitor.CycleResult) -> None:
    for order_id in result.exit_order_ids:
        submit_order.delay(order_id)
