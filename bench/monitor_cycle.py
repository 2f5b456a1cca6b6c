"""Target 1: one stop-loss monitor cycle over a growing book of protected positions (paper broker).

Each size runs in its own process (``python -m bench.monitor_cycle SIZE``) so its peak memory is its
own: the book is generated in PostgreSQL, then the cycle task runs in the foreground (one chunk, no
worker) several times; the exits it hands out go to the bench Redis queue and are dropped there.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from typing import Any

import sqlalchemy as sa

from bench import common, data

SIZES = {1_000: (100, 50), 10_000: (1_000, 500), 100_000: (10_000, 2_000)}  # positions: (users, symbols)


def measure(positions: int, runs: int) -> dict[str, Any]:
    """Cycle time, statements, quote calls and closes over ``positions`` (in this process)."""
    users, symbols = SIZES[positions]
    app = common.fresh_app({"STOP_MONITOR_CHUNK_SIZE": "1000000", "QUOTE_CACHE_SECONDS": "0"})
    from utils.extensions import db
    from utils.services import monitor
    from utils.tasks.monitoring import stop_loss_cycle

    with app.app_context():
        data.seed(db.engine, data.Book(users, positions, symbols), common.PASSWORD)
        samples: list[dict[str, Any]] = []
        for _ in range(runs + 1):  # the first run warms caches up and is not counted
            _reopen(db.engine)
            with common.counted_statements(db.engine) as statements:
                started = time.perf_counter()
                stop_loss_cycle.run()
                seconds = time.perf_counter() - started
            [run] = monitor.recent_runs(1)
            samples.append(
                {
                    "seconds": seconds,
                    "statements": len(statements),
                    "quote_calls": run.quote_calls,
                    "breaches": run.breaches,
                    "closes": run.closes,
                    "positions": run.positions,
                }
            )
            db.session.remove()
        _purge_queue(app)
    counted = samples[1:]
    return {
        "positions": positions,
        "users": users,
        "symbols": symbols,
        "seconds": common.Spread.of([s["seconds"] for s in counted]).as_dict(),
        "statements": sorted({s["statements"] for s in counted}),
        "quote_calls": sorted({s["quote_calls"] for s in counted}),
        "breaches": counted[-1]["breaches"],
        "closes": counted[-1]["closes"],
        "checked": counted[-1]["positions"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run(sizes: list[int], runs: int) -> dict[str, Any]:
    """Every size in its own process; the ratio of the two smallest adjacent sizes' medians."""
    results = [_in_child(size, runs) for size in sizes]
    return {"machine": common.machine(), "runs": runs, "sizes": results}


def _in_child(size: int, runs: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.monitor_cycle", str(size), str(runs)],
        cwd=common.ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"monitor cycle at {size} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _reopen(engine: sa.Engine) -> None:
    """Put the book back as generated: trades a previous run started closing are open again."""
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM orders WHERE purpose = 'exit' AND status = 'pending_submit'"))
        connection.execute(sa.text("UPDATE trades SET status = 'open', breached_at = NULL WHERE status = 'closing'"))


def _purge_queue(app: Any) -> None:
    app.extensions["celery"].control.purge()


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))
