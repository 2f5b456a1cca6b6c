"""Bulk data for the benchmarks: users, paper connections, open protected trades and closed history.

Rows are generated inside PostgreSQL (INSERT ... SELECT over generate_series), not through the ORM:
a million trades load in well under a minute. Expects a freshly migrated database (``common.fresh_app``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa

from utils.brokers.paper_prices import SyntheticPrices
from utils.passwords import hash_password

STARTING_CASH = Decimal("10000000")


@dataclass(frozen=True)
class Book:
    """The shape of a generated book."""

    users: int
    positions: int  # open, protected trades
    symbols: int
    breached_every: int = 100  # one open trade in this many has its stop already crossed (1%)
    closed: int = 0  # closed trades of history, each with its entry and exit order
    equities: bool = False  # stock symbols (market hours apply) instead of crypto products


def symbols(count: int, equities: bool = False) -> list[str]:
    """``count`` crypto products the paper broker quotes around the clock ("B0001-USD"...), or stock
    tickers ("QAAB"...)."""
    if equities:
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        return ["Q" + "".join(letters[index // 26**p % 26] for p in (2, 1, 0)) for index in range(1, count + 1)]
    return [f"B{index:04d}-USD" for index in range(1, count + 1)]


def email(user_number: int) -> str:
    """The generated user's login (numbers from 1); every user's password is ``common.PASSWORD``."""
    return f"bench{user_number}@example.com"


def clear(engine: sa.Engine) -> None:
    """Empty every table of the platform (the schema stays), so ``seed`` can run again."""
    with engine.begin() as connection:
        names = connection.execute(
            sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
        ).scalars()
        connection.execute(sa.text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))


def prices(names: list[str], price_seed: int = 0) -> dict[str, Decimal]:
    """The paper market's price of each symbol now: the level the generated trades are bought at."""
    quotes = SyntheticPrices(price_seed).quotes(names, datetime.now(UTC))
    return {name: quotes[name].mark for name in names}


def seed(engine: sa.Engine, book: Book, password: str, price_seed: int = 0) -> None:
    """Fill an empty, migrated database with ``book``."""
    names = symbols(book.symbols, book.equities)
    levels = prices(names, price_seed)
    prices_text = [str(levels[name]) for name in names]
    with engine.begin() as connection:
        _users(connection, book.users, hash_password(password))
        _connections(connection)
        _open_trades(connection, book, names, prices_text)
        if book.closed:
            _closed_trades(connection, book, names, prices_text)
        _orders(connection)
        _paper_positions(connection)
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("VACUUM ANALYZE"))


def _users(connection: sa.Connection, count: int, password_hash: str) -> None:
    connection.execute(
        sa.text(
            "INSERT INTO users (email, display_name, password_hash, role, active, session_version,"
            " created_at, updated_at)"
            " SELECT 'bench' || i || '@example.com', 'Bench ' || i, :hash, 'trader', true, 1, now(), now()"
            " FROM generate_series(1, :count) AS i"
        ),
        {"hash": password_hash, "count": count},
    )


def _connections(connection: sa.Connection) -> None:
    """One connected paper account per user."""
    connection.execute(
        sa.text(
            "INSERT INTO broker_connections (user_id, provider, label, status, status_detail, created_at, updated_at)"
            " SELECT id, 'paper', 'Bench paper', 'connected', '', now(), now() FROM users ORDER BY id"
        )
    )
    connection.execute(
        sa.text(
            "INSERT INTO paper_accounts (connection_id, account_key, cash, starting_cash, created_at, updated_at)"
            " SELECT id, 'bench' || id, :cash, :cash, now(), now() FROM broker_connections"
        ),
        {"cash": STARTING_CASH},
    )


_SPREAD = (
    "WITH sym AS (SELECT symbol, CAST(price AS numeric) AS price, ord - 1 AS k"
    "  FROM unnest(CAST(:symbols AS text[]), CAST(:prices AS text[])) WITH ORDINALITY AS s(symbol, price, ord)),"
    " account AS (SELECT id, user_id, row_number() OVER (ORDER BY user_id) - 1 AS k FROM broker_connections)"
)


def _open_trades(connection: sa.Connection, book: Book, names: list[str], prices: list[str]) -> None:
    """Long trades of one unit spread round-robin over users, each user's over many symbols, with an emulated stop:
    half the price, or above the market (already breached) for one in ``breached_every``."""
    connection.execute(
        sa.text(
            _SPREAD + " INSERT INTO trades (user_id, connection_id, symbol, side, trade_type, status, quantity,"
            " filled_quantity, price, average_fill_price, protection_mode, stop_loss_price, fees, notes,"
            " protection_detail, exit_filled_quantity, created_at, updated_at, opened_at)"
            " SELECT account.user_id, account.id, sym.symbol, 'buy', 'market', 'open', 1, 1, sym.price, sym.price,"
            " 'emulated', CASE WHEN i % :every = 0 THEN round(sym.price * 1.5, 2) ELSE round(sym.price * 0.5, 2) END,"
            " 0, '', '', 0, now(), now(), now()"
            " FROM generate_series(1, :count) AS i"
            " JOIN account ON account.k = i % :users JOIN sym ON sym.k = (i + i / :users) % :nsym"
        ),
        {
            "symbols": names,
            "prices": prices,
            "every": book.breached_every,
            "count": book.positions,
            "users": book.users,
            "nsym": len(names),
        },
    )


def _closed_trades(connection: sa.Connection, book: Book, names: list[str], prices: list[str]) -> None:
    """History: closed round trips over the past year, at a small profit or loss each."""
    connection.execute(
        sa.text(
            _SPREAD + " INSERT INTO trades (user_id, connection_id, symbol, side, trade_type, status, quantity,"
            " filled_quantity, price, average_fill_price, protection_mode, fees, notes, protection_detail,"
            " exit_filled_quantity, exit_average_price, close_price, realized_pnl, created_at, updated_at,"
            " opened_at, closed_at)"
            " SELECT account.user_id, account.id, sym.symbol, 'buy', 'market', 'closed', 1, 1, sym.price, sym.price,"
            " 'none', 0, '', '', 1, sym.price + (i % 7 - 3), sym.price + (i % 7 - 3), i % 7 - 3,"
            " at, at + interval '1 hour', at, at + interval '1 hour'"
            " FROM generate_series(1, :count) AS i"
            " JOIN account ON account.k = i % :users JOIN sym ON sym.k = (i + i / :users) % :nsym"
            " CROSS JOIN LATERAL (SELECT now() - (i % 525600) * interval '1 minute' AS at) AS moment"
        ),
        {"symbols": names, "prices": prices, "count": book.closed, "users": book.users, "nsym": len(names)},
    )


def _orders(connection: sa.Connection) -> None:
    """Every trade's filled entry order, and a filled exit order for the closed ones."""
    common = (
        " INSERT INTO orders (user_id, connection_id, trade_id, client_order_id, broker_order_id, purpose, symbol,"
        " side, order_type, time_in_force, status, quantity, filled_quantity, average_fill_price, fees,"
        " status_detail, created_at, updated_at, submitted_at, closed_at)"
    )
    connection.execute(
        sa.text(
            common + " SELECT user_id, connection_id, id, 'bench-in-' || id, 'paper-in-' || id, 'entry', symbol,"
            " 'buy', 'market', 'day', 'filled', quantity, quantity, average_fill_price, 0, '',"
            " opened_at, opened_at, opened_at, opened_at FROM trades"
        )
    )
    connection.execute(
        sa.text(
            common + " SELECT user_id, connection_id, id, 'bench-out-' || id, 'paper-out-' || id, 'exit', symbol,"
            " 'sell', 'market', 'day', 'filled', quantity, quantity, exit_average_price, 0, '',"
            " closed_at, closed_at, closed_at, closed_at FROM trades WHERE status = 'closed'"
        )
    )


def _paper_positions(connection: sa.Connection) -> None:
    """The paper broker holds what the open trades bought (so their exits can sell it)."""
    connection.execute(
        sa.text(
            "INSERT INTO paper_positions (account_id, symbol, quantity, average_price)"
            " SELECT account.id, trades.symbol, sum(trades.quantity), round(avg(trades.price), 2)"
            " FROM trades JOIN paper_accounts AS account ON account.connection_id = trades.connection_id"
            " WHERE trades.status = 'open' GROUP BY account.id, trades.symbol"
        )
    )
