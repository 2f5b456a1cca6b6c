"""Target 2: breach to protection, from the moment a price crosses an emulated stop to the moment the
close order is submitted to the broker, with STOP_MONITOR_INTERVAL=5 s.

The whole platform runs (bench.stack: gunicorn, one Celery worker with 4 processes, beat) over a
book of protected paper positions whose stops sit at half the price. Each round waits a random
time within the monitor's interval, then moves a few symbols' paper price down 60%
(``paper_market.shift_price``, as `flask paper shift` does): every position in them is breached at
that instant. The latency of each breach is its exit order's ``submitted_at`` minus the moment just
before the shift was stored (so it is, if anything, over-stated).

With native stops (a broker that holds them) the broker itself closes the position at the stop; the
platform sends nothing then, its monitor only steps in if the broker's stop has not acted within one
interval. That path is the broker's latency, not ours, and is not measured here.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from bench import common, data, stack

INTERVAL = 5
SYMBOLS_PER_ROUND = 3
DROP_PERCENT = "-60"
GIVE_UP = 60.0


def run(quick: bool) -> dict[str, Any]:
    """Rounds of simultaneous breaches until the wanted number of breaches is measured."""
    wanted = 200 if quick else 1_000
    book = data.Book(users=1_000, positions=10_000, symbols=500, breached_every=10**9)
    app = common.fresh_app()
    from utils.extensions import db
    from utils.services import paper_market

    engine = sa.create_engine(common.DATABASE_URL)
    with app.app_context():
        data.seed(db.engine, book, common.PASSWORD)
    names = data.symbols(book.symbols)
    rng = random.Random(6)  # noqa: S311 - timing jitter, not security
    latencies: list[float] = []
    overrides = {"STOP_MONITOR_INTERVAL": str(INTERVAL), "QUOTE_CACHE_SECONDS": "2"}
    with stack.running(overrides, web_workers=1, threads=2, celery_workers=1, concurrency=4, beat=True):
        time.sleep(2 * INTERVAL)  # beat's first slots pass: the monitor runs steadily
        for round_number in range(len(names) // SYMBOLS_PER_ROUND):
            if len(latencies) >= wanted:
                break
            chosen = names[round_number * SYMBOLS_PER_ROUND : (round_number + 1) * SYMBOLS_PER_ROUND]
            time.sleep(rng.uniform(0, INTERVAL))
            crossed: dict[str, datetime] = {}
            with app.app_context():
                for symbol in chosen:
                    crossed[symbol] = datetime.now(UTC)
                    paper_market.shift_price(symbol, DROP_PERCENT)
                db.session.remove()
            latencies += _wait_for_exits(engine, crossed)
    app.extensions["celery"].control.purge()
    result = _result(latencies, book, quick)
    common.save("breach_latency", result)
    return result


def _wait_for_exits(engine: sa.Engine, crossed: dict[str, datetime]) -> list[float]:
    """Seconds from each crossing to its exit's submission, once every position in the symbols has one."""
    query = sa.text(
        "SELECT trades.symbol, orders.submitted_at, (SELECT count(*) FROM trades AS t WHERE t.symbol = trades.symbol)"
        " FROM orders JOIN trades ON trades.id = orders.trade_id"
        " WHERE orders.purpose = 'exit' AND orders.submitted_at IS NOT NULL AND trades.symbol = ANY(:symbols)"
    )
    deadline = time.monotonic() + GIVE_UP
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            rows = connection.execute(query, {"symbols": list(crossed)}).all()
        expected = sum({symbol: count for symbol, _, count in rows}.values())
        if rows and len(rows) == expected and {symbol for symbol, _, _ in rows} == set(crossed):
            return [(submitted - crossed[symbol]).total_seconds() for symbol, submitted, _ in rows]
        time.sleep(0.1)
    raise RuntimeError(f"the breaches of {sorted(crossed)} were not all closed within {GIVE_UP:.0f} s")


def _result(latencies: list[float], book: data.Book, quick: bool) -> dict[str, Any]:
    p50, p99 = common.percentile(latencies, 0.50), common.percentile(latencies, 0.99)
    return {
        "title": "Breach to protection",
        "about": (
            f"{len(latencies):,} breaches in rounds of {SYMBOLS_PER_ROUND} symbols crossed at once, at random moments "
            f"within the {INTERVAL} s monitor interval, over a book of {book.positions:,} protected positions "
            f"({book.users:,} users, {book.symbols:,} symbols); the whole platform running (web, one worker with 4 "
            "processes, beat). Latency: the exit's submission to the broker minus the moment before the price moved. "
            "With native stops the broker holds the stop and closes the position itself; the platform adds nothing."
        ),
        "command": "python -m bench.run --full --only breach_latency",
        "machine": common.machine(),
        "targets": [
            {
                "name": f"crossing to close submitted, p99 of {len(latencies):,}",
                "target": "≤ 6 s",
                "measured": f"p50 {p50:.2f} s, p99 {p99:.2f} s",
                "met": p99 <= 6 and len(latencies) >= (200 if quick else 1_000),
            }
        ],
        "tables": [
            {
                "title": "Latency (s)",
                "columns": ["breaches", "min", "p50", "p90", "p99", "max"],
                "rows": [
                    [
                        len(latencies),
                        *(f"{common.percentile(latencies, q):.2f}" for q in (0.0, 0.5, 0.9, 0.99, 1.0)),
                    ]
                ],
            }
        ],
        "latencies": sorted(round(value, 3) for value in latencies),
    }
