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
from utils.services import monitor, task_locks
from utils.tasks.trading import PASS_HARD_LIMIT, PASS_SOFT_LIMIT, close_positions


@shared_task(
    name="monitoring.stop_loss_cycle", ignore_result=True, soft_time_limit=PASS_SOFT_LIMIT, time_limit=PASS_HARD_LIMIT
)
def stop_loss_cycle(on_slot: bool = False) -> int:
    """Start one cycle (beat's: the current slot's): run it here, or fan it out per connection chunk.
    Returns the chunks."""
    chunks = monitor.connection_chunks(current_app.config["STOP_MONITOR_CHUNK_SIZE"])
    interval = current_app.config["STOP_MONITOR_INTERVAL"]
    cycle_key = monitor.slot_key(utcnow(), interval) if on_slot else uuid.uuid4().hex[:16]
    if len(chunks) <= 1:
        _run(chunks[0] if chunks else [], cycle_key, 0)
        return len(chunks)
    for part, chunk in enumerate(chunks, start=1):
        stop_loss_chunk.delay(chunk, cycle_key, part)
    return len(chunks)


@shared_task(
    name="monitoring.stop_loss_chunk", ignore_result=True, soft_time_limit=PASS_SOFT_LIMIT, time_limit=PASS_HARD_LIMIT
)
def stop_loss_chunk(connection_ids: list[int], cycle_key: str, part: int = 0) -> None:
    """One chunk (``part``) of a fanned-out cycle."""
    _run(connection_ids, cycle_key, part)


def _run(connection_ids: list[int], cycle_key: str, part: int) -> None:
    """Run one chunk and hand out its breaches, unless an earlier cycle's pass over the same chunk
    (held up by a slow broker) still runs: then this cycle leaves it to that one."""
    key = f"monitor:{connection_ids[0] if connection_ids else 'none'}"
    with task_locks.one_at_a_time(key) as mine:
        result = monitor.run_cycle(connection_ids, cycle_key, part) if mine else None
    close_positions(result.to_close if result else [])
