"""Target 1, quotes from a distant broker: the monitor cycle over 10,000 positions held through Schwab,
with the Schwab fake (tests/fakes/schwab.py) answering every call after 50 ms.

The book is generated in PostgreSQL as for ``monitor_cycle`` (stock tickers instead of crypto), then
every generated connection becomes a Schwab connection carrying the login of one trader connected
through the real OAuth flow (market data is the same for every user, so the monitor asks through
any one of them). The cycle must ask once per batch of 200 symbols, not once per user or position.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bench import common, data, monitor_cycle, schwab_overhead

LATENCY = 0.050
SCHWAB_BATCH = 200


def run(quick: bool) -> dict[str, Any]:
    """Several cycles over the Schwab book (the same size in both modes; fewer runs in quick mode)."""
    book = data.Book(users=1_000, positions=10_000, symbols=500, equities=True)
    runs = 3 if quick else 5
    with schwab_overhead.running_fake() as fake:
        overrides = fake.settings() | {"STOP_MONITOR_CHUNK_SIZE": "1000000", "QUOTE_CACHE_SECONDS": "0"}
        app = common.fresh_app(overrides)
        account = schwab_overhead.connect_user(app, fake)
        from utils.extensions import db

        with app.app_context():
            data.seed(db.engine, book, common.PASSWORD)
            _all_through_schwab(db.engine, account.connection_id)
            for symbol, price in data.prices(data.symbols(book.symbols, equities=True)).items():
                fake.state.set_price(symbol, str(price))
            fake.state.latency = LATENCY
            measured = monitor_cycle.summary(monitor_cycle.timed_cycles(app, runs))
    result = _result(book, measured, runs)
    common.save("monitor_schwab", result)
    return result


def _all_through_schwab(engine: sa.Engine, source_id: int) -> None:
    """Every connection becomes a Schwab connection with the connected trader's login and account."""
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE broker_connections AS target SET provider = 'schwab', account_hash = source.account_hash,"
                " access_token_encrypted = source.access_token_encrypted,"
                " refresh_token_encrypted = source.refresh_token_encrypted,"
                " access_token_expires_at = source.access_token_expires_at,"
                " refresh_token_issued_at = source.refresh_token_issued_at"
                " FROM broker_connections AS source WHERE source.id = :source AND target.id <> :source"
            ),
            {"source": source_id},
        )


def _result(book: data.Book, measured: dict[str, Any], runs: int) -> dict[str, Any]:
    median, batches = measured["seconds"]["median"], -(-book.symbols // SCHWAB_BATCH)
    return {
        "title": "Monitor cycle with quotes from Schwab (50 ms a call)",
        "about": (
            f"The monitor task in the foreground over {book.positions:,} positions ({book.users:,} users, "
            f"{book.symbols} stock symbols, every connection a Schwab one); the Schwab fake answers every call "
            f"after {LATENCY * 1000:.0f} ms. {runs} runs after one warm-up."
        ),
        "command": "python -m bench.run --full --only monitor_schwab",
        "machine": common.machine(),
        "targets": [
            {
                "name": f"cycle at {book.positions:,} positions, Schwab at 50 ms (median)",
                "target": "≤ 2 s",
                "measured": f"{median:.3f} s",
                "met": median <= 2,
            },
            {
                "name": "quote calls per cycle",
                "target": f"= symbol batches ({book.symbols} symbols / {SCHWAB_BATCH} = {batches})",
                "measured": " / ".join(str(count) for count in measured["quote_calls"]),
                "met": measured["quote_calls"] == [batches],
            },
        ],
        "tables": [
            {
                "title": "Cycle",
                "columns": ["positions", "median s", "min-max s", "SQL", "quote calls", "closes queued"],
                "rows": [
                    [
                        f"{measured['checked']:,}",
                        f"{median:.3f}",
                        f"{measured['seconds']['min']:.3f}-{measured['seconds']['max']:.3f}",
                        measured["statements"][0],
                        measured["quote_calls"][0],
                        measured["closes"],
                    ]
                ],
            }
        ],
        "measured": measured,
    }
