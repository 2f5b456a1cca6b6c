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

from bench import common, data

SIZES = {1_000: (100, 50), 10_000: (1_000, 500), 100_000: (10_000, 2_000)}  # positions: (users, symbols)


def measure(positions: int, runs: int) -> dict[str, Any]:
    """Cycle time, statements, quote calls and closes over ``positions`` (in this process)."""
    users, symbols = SIZES[positions]
    app = common.fresh_app({"STOP_MONITOR_CHUNK_SIZE": "1000000", "QUOTE_CACHE_SECONDS": "0"})
    from utils.extensions import db

    with app.app_context():
        data.seed(db.engine, data.Book(users, positions, symbols), common.PASSWORD)
        samples = timed_cycles(app, runs)
    return {
        "positions": positions,
        "users": users,
        "symbols": symbols,
        **summary(samples),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def timed_cycles(app: Any, runs: int) -> list[dict[str, Any]]:
    """``runs`` cycles of the monitor task in the foreground (after one warm-up), each timed with its
    statements counted; the close tasks they enqueue are dropped from the queue afterwards."""
    from utils.extensions import db
    from utils.services import monitor
    from utils.tasks.monitoring import stop_loss_cycle

    samples: list[dict[str, Any]] = []
    for _ in range(runs + 1):
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
    app.extensions["celery"].control.purge()
    return samples[1:]


def summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and spread of the cycle times; the counts each cycle reported."""
    return {
        "seconds": common.Spread.of([sample["seconds"] for sample in samples]).as_dict(),
        "statements": sorted({sample["statements"] for sample in samples}),
        "quote_calls": sorted({sample["quote_calls"] for sample in samples}),
        "breaches": samples[-1]["breaches"],
        "closes": samples[-1]["closes"],
        "checked": samples[-1]["positions"],
    }


def run(quick: bool) -> dict[str, Any]:
    """Every size in its own process; targets from the issue (the 100,000 size in full mode only)."""
    sizes, runs = ([1_000, 10_000], 3) if quick else ([1_000, 10_000, 100_000], 5)
    results = {size: _in_child(size, runs) for size in sizes}
    result = {
        "title": "Stop-loss monitor cycle",
        "about": (
            "One full cycle of the monitor task (`monitoring.stop_loss_cycle`, one chunk, in the foreground): "
            "load every protected open trade, quote every symbol through the paper broker, evaluate, write the "
            "marks and enqueue one close task per breached trade (1% of them) on Redis. Emulated stops, one unit "
            "long per trade, spread round-robin over users and symbols; the book is generated in PostgreSQL. "
            f"{runs} runs per size after one warm-up run; each size in its own process (peak RSS is its own)."
        ),
        "command": "python -m bench.run --full --only monitor_cycle",
        "machine": common.machine(),
        "targets": _targets(results),
        "tables": [_table(results)],
        "plot": {
            "title": "Monitor cycle time against open positions",
            "file": "monitor_cycle.png",
            "x": sizes,
            "series": {"median cycle (s)": [results[size]["seconds"]["median"] for size in sizes]},
            "xlabel": "protected open positions",
            "ylabel": "seconds",
        },
        "sizes": list(results.values()),
    }
    common.save("monitor_cycle", result)
    return result


def _targets(results: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    ten, one = results[10_000]["seconds"]["median"], results[1_000]["seconds"]["median"]
    statements = [count for result in results.values() for count in result["statements"]]
    targets = [
        _target("cycle at 10,000 positions (median)", "≤ 1 s", f"{ten:.3f} s", ten <= 1),
        _target("time(10k) / time(1k)", "≤ 11", f"{ten / one:.1f}", ten / one <= 11),
        _target(
            "SQL statements per cycle",
            "constant in positions",
            " / ".join(f"{r['statements'][0]} at {size:,}" for size, r in results.items()),
            max(statements) - min(statements) <= 2,
        ),
        _target(
            "quote calls per cycle",
            "= symbol batches per provider",
            " / ".join(f"{r['quote_calls'][0]} for {r['symbols']} symbols" for r in results.values()),
            all(r["quote_calls"] == [_batches(r["symbols"])] for r in results.values()),
        ),
    ]
    if 100_000 in results:
        big = results[100_000]
        targets.append(
            _target(
                "cycle at 100,000 positions (median)",
                "≤ 10 s",
                f"{big['seconds']['median']:.2f} s",
                big["seconds"]["median"] <= 10,
            )
        )
        targets.append(
            _target("peak memory at 100,000", "≤ 400 MB", f"{big['peak_rss_mb']:.0f} MB", big["peak_rss_mb"] <= 400)
        )
    return targets


def _table(results: dict[int, dict[str, Any]]) -> dict[str, Any]:
    rows = [
        [
            f"{size:,}",
            f"{r['users']:,}",
            f"{r['symbols']:,}",
            f"{r['seconds']['median']:.3f}",
            f"{r['seconds']['min']:.3f}-{r['seconds']['max']:.3f}",
            r["statements"][0],
            r["quote_calls"][0],
            r["closes"],
            f"{r['peak_rss_mb']:.0f}",
        ]
        for size, r in results.items()
    ]
    columns = [
        "positions",
        "users",
        "symbols",
        "median s",
        "min-max s",
        "SQL",
        "quote calls",
        "closes queued",
        "RSS MB",
    ]
    return {"title": "Cycle time by book size", "columns": columns, "rows": rows}


def _target(name: str, target: str, measured: str, met: bool) -> dict[str, Any]:
    return {"name": name, "target": target, "measured": measured, "met": met}


def _batches(symbols: int) -> int:
    """Quote calls the paper broker needs for ``symbols`` (500 per call)."""
    return -(-symbols // 500)


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


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))
