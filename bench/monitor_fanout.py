"""Target 1, fan-out: the same monitor cycle with one Celery worker process, then with two.

The platform runs for real (bench.stack: gunicorn and Celery workers with one process each, no
beat). Before each run the book is generated afresh; the cycle task is sent as beat sends it and
fans out one task per chunk of STOP_MONITOR_CHUNK_SIZE connections. The cycle's time is from the
send to the end of the last chunk's run (its MonitorRun row); the close tasks its chunks enqueue
are dropped once the chunks are done, so they never run into the next measurement.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from celery import Celery

from bench import common, data, stack

CHUNK = 200
POLL = 0.05
GIVE_UP = 300.0


def run(quick: bool) -> dict[str, Any]:
    """One worker against two, several runs each; the ratio of their medians."""
    book = data.Book(users=1_000, positions=10_000, symbols=500) if quick else data.Book(10_000, 100_000, 2_000)
    runs = 2 if quick else 3
    app = common.fresh_app()
    engine = sa.create_engine(common.DATABASE_URL)
    overrides = {"STOP_MONITOR_CHUNK_SIZE": str(CHUNK), "CELERY_CONCURRENCY": "1"}
    seconds: dict[int, list[float]] = {}
    for workers in (1, 2):
        with stack.running(overrides, web_workers=1, threads=1, celery_workers=workers, concurrency=1):
            seconds[workers] = [_one_cycle(engine, book) for _ in range(runs)]
    app.extensions["celery"].control.purge()
    one, two = (common.Spread.of(seconds[n]) for n in (1, 2))
    ratio = one.median / two.median
    result = {
        "title": "Monitor fan-out over worker processes",
        "about": (
            f"The cycle over {book.positions:,} positions ({book.users:,} users, {book.symbols:,} symbols) sent as "
            f"beat sends it: chunks of {CHUNK} connections, one task each, run by Celery worker processes "
            "(each worker started with --concurrency 1). Time from the send to the end of the last chunk. "
            f"{runs} runs per configuration, the book generated afresh before each."
        ),
        "command": "python -m bench.run --full --only monitor_fanout",
        "machine": common.machine(),
        "targets": [
            {
                "name": f"cycle at {book.positions:,}: 2 workers faster than 1",
                "target": "ratio > 1",
                "measured": f"{one.median:.2f} s / {two.median:.2f} s = {ratio:.2f}",
                "met": ratio > 1,
            }
        ],
        "tables": [
            {
                "title": "Fanned-out cycle",
                "columns": ["worker processes", "median s", "min-max s", "runs"],
                "rows": [[n, f"{s.median:.2f}", f"{s.low:.2f}-{s.high:.2f}", s.runs] for n, s in ((1, one), (2, two))],
            }
        ],
        "seconds": {str(n): values for n, values in seconds.items()},
        "ratio": ratio,
    }
    common.save("monitor_fanout", result)
    return result


def _one_cycle(engine: sa.Engine, book: data.Book) -> float:
    """Generate the book, send the cycle, wait for every chunk; seconds from send to the last chunk's end."""
    chunks = -(-book.users // CHUNK)  # one paper connection per user
    queue = Celery(broker=common.REDIS_URL)
    try:
        _wait_until_idle(queue)  # the previous run's close tasks hold row locks a TRUNCATE would wait on
        data.clear(engine)
        data.seed(engine, book, common.PASSWORD)
        sent = datetime.now(UTC)
        queue.send_task("monitoring.stop_loss_cycle")
        finished = _wait_for_runs(engine, chunks)
        queue.control.purge()  # the close tasks the chunks enqueued: not part of the cycle
    finally:
        queue.close()
    return (finished - sent).total_seconds()


def _wait_until_idle(queue: Celery) -> None:
    """Until no worker runs a task (the queue itself was purged)."""
    deadline = time.monotonic() + GIVE_UP
    while time.monotonic() < deadline:
        active = queue.control.inspect(timeout=1.0).active() or {}
        if not any(active.values()):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the workers were still busy after {GIVE_UP:.0f} s")


def _wait_for_runs(engine: sa.Engine, chunks: int) -> datetime:
    """When the last of ``chunks`` monitor runs ended (polling their rows)."""
    deadline = time.monotonic() + GIVE_UP
    query = sa.text(
        "SELECT count(*), max(started_at + duration_ms * interval '1 millisecond') FROM monitor_runs"
        " WHERE positions > 0"  # recorded at the end of the run (a chunk always has positions)
    )
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            count, last = connection.execute(query).one()
        if count >= chunks:
            return last
        time.sleep(POLL)
    raise RuntimeError(f"only {count} of {chunks} chunks ran within {GIVE_UP:.0f} s")
