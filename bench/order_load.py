"""Client side of the order-path benchmark: API accounts, concurrent POST /api/v1/orders, and what
the database says afterwards (acknowledged by the broker, failed, duplicated).

Every order is a protected market buy of one unit sent with a Bearer token and its own
Idempotency-Key, as a well-behaved API client sends it. Users come from ``bench.data.seed`` (one
paper connection each) with a token issued through ``api_tokens.create_token``; each user places at
most ``ORDERS_PER_USER`` orders, far inside the default risk limits (20 open positions, 200 entries a
day), so no limit is raised for the paper broker.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import requests
import sqlalchemy as sa
from flask import Flask

from bench import common, data
from utils.brokers.paper_prices import SyntheticPrices

ORDERS_PER_USER = 10
ACKNOWLEDGED = ("submitted", "working", "partially_filled", "filled")  # with a broker order id
FAILED = ("rejected", "unknown", "cancelled", "expired")
STOP_BELOW_MARKET = Decimal("0.85")  # 15% under the bid: inside RISK_MAX_STOP_DISTANCE_PCT (20%)
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Account:
    """One API caller: a user, their token and the connection they trade."""

    user_id: int
    token: str
    connection_id: int


@dataclass
class AccountPool:
    """Accounts handed out ``ORDERS_PER_USER`` orders at a time, never twice."""

    accounts: list[Account]
    used: int = 0

    def take(self, orders: int) -> list[Account]:
        """The account of each of ``orders`` orders (fresh users, ``ORDERS_PER_USER`` orders each)."""
        users = -(-orders // ORDERS_PER_USER)
        if self.used + users > len(self.accounts):
            raise RuntimeError(f"the pool has {len(self.accounts) - self.used} unused users, {users} wanted")
        chosen = self.accounts[self.used : self.used + users]
        self.used += users
        return [account for account in chosen for _ in range(ORDERS_PER_USER)][:orders]


@dataclass
class Posted:
    """What the clients saw: API latencies, the ids of accepted orders and the refusals."""

    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    order_ids: list[int] = field(default_factory=list)
    refusals: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, milliseconds: float, response: requests.Response | None, failure: str = "") -> None:
        """One answer (a 202 with the order, or a refusal named by status or exception)."""
        with self.lock:
            self.latencies_ms.append(milliseconds)
            if response is not None and response.status_code == 202:
                self.order_ids.append(int(response.json()["id"]))
                return
            reason = failure or f"{response.status_code if response is not None else 'none'}"
            self.refusals[reason] = self.refusals.get(reason, 0) + 1


def paper_accounts(app: Flask, users: int) -> AccountPool:
    """``users`` generated users with a connected paper account and a read+trade API token each."""
    from models import User
    from utils.extensions import db
    from utils.services import api_tokens

    with app.app_context():
        data.seed(db.engine, data.Book(users=users, positions=0, symbols=1), common.PASSWORD)
        rows = db.session.execute(
            sa.text("SELECT user_id, id FROM broker_connections WHERE provider = 'paper' ORDER BY user_id")
        ).all()
        accounts = []
        for user_id, connection_id in rows:
            user = db.session.get_one(User, user_id)
            issued = api_tokens.create_token(user, "bench", ["read", "trade"])
            accounts.append(Account(user_id, issued.plaintext, connection_id))
        db.session.remove()
    return AccountPool(accounts)


def paper_symbols(count: int) -> dict[str, Decimal]:
    """``count`` paper crypto products priced 20 to 1,000, with a stop-loss 15% under their bid now."""
    names = data.symbols(count * 5)
    quotes = SyntheticPrices(0).quotes(names, datetime.now(UTC))
    priced = [name for name in names if Decimal(20) <= quotes[name].mark <= Decimal(1000)][:count]
    return {name: (quotes[name].bid * STOP_BELOW_MARKET).quantize(Decimal("0.01")) for name in priced}


def order_bodies(accounts: list[Account], stops: dict[str, Decimal]) -> list[tuple[Account, dict[str, Any]]]:
    """One protected market buy of one unit per account slot, cycling through the symbols."""
    symbols = itertools.cycle(stops.items())
    return [(account, _body(account.connection_id, *next(symbols))) for account in accounts]


def _body(connection_id: int, symbol: str, stop: Decimal) -> dict[str, Any]:
    return {
        "connection_id": connection_id,
        "symbol": symbol,
        "side": "buy",
        "quantity": "1",
        "order_type": "market",
        "stop_loss_price": str(stop),
    }


def post_orders(
    base_url: str, orders: list[tuple[Account, dict[str, Any]]], clients: int, every: float = 0.0
) -> Posted:
    """Send ``orders`` from ``clients`` threads (one HTTP session each): each sends its next order as
    soon as the last is answered (closed loop), or, with ``every`` > 0, on a schedule of one order
    every ``every`` seconds (clients staggered evenly; a late answer is not made up by waiting less)."""
    posted = Posted()
    cursor = itertools.count()

    def closed_loop(_: int) -> None:
        with requests.Session() as session:
            while (index := next(cursor)) < len(orders):
                place(session, base_url, *orders[index], posted)

    def paced(client: int) -> None:
        with requests.Session() as session:
            due = time.perf_counter() + every * client / clients
            for account, body in orders[client::clients]:
                time.sleep(max(0.0, due - time.perf_counter()))
                place(session, base_url, account, body, posted)
                due = max(due + every, time.perf_counter())

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(paced if every > 0 else closed_loop, client) for client in range(clients)]:
            future.result()
    posted.seconds = time.perf_counter() - started
    return posted


def place(session: requests.Session, base_url: str, account: Account, body: dict[str, Any], posted: Posted) -> int:
    """POST one order and record its answer; returns the order id (0 when refused)."""
    headers = {"Authorization": f"Bearer {account.token}", "Idempotency-Key": uuid.uuid4().hex}
    started = time.perf_counter()
    try:
        response = session.post(f"{base_url}/api/v1/orders", json=body, headers=headers, timeout=30)
    except requests.RequestException as exc:
        posted.record((time.perf_counter() - started) * 1000, None, type(exc).__name__)
        return 0
    posted.record((time.perf_counter() - started) * 1000, response)
    return int(response.json()["id"]) if response.status_code == 202 else 0


@dataclass(frozen=True)
class Settled:
    """How the accepted orders ended: acknowledged by the broker and stored, failed, or still waiting."""

    acknowledged: int
    failed: int
    waiting: int
    seconds: float  # from ``started`` until the last one was seen acknowledged or failed


def wait_settled(engine: sa.Engine, order_ids: list[int], started: float, timeout: float) -> Settled:
    """Poll the orders until none waits for the broker any more (or ``timeout`` passes)."""
    counts = (0, 0)
    deadline = time.perf_counter() + timeout
    with _reader(engine) as connection:
        while time.perf_counter() < deadline:
            counts = _settled_counts(connection, order_ids)
            if sum(counts) >= len(order_ids):
                break
            time.sleep(POLL_SECONDS)
    seconds = time.perf_counter() - started
    return Settled(counts[0], counts[1], len(order_ids) - sum(counts), seconds)


def acknowledged_status(connection: sa.Connection, order_id: int) -> str:
    """'acknowledged', 'failed' or '' (still waiting) for one order."""
    acknowledged, failed = _settled_counts(connection, [order_id])
    return "acknowledged" if acknowledged else "failed" if failed else ""


def _settled_counts(connection: sa.Connection, order_ids: list[int]) -> tuple[int, int]:
    row = connection.execute(
        sa.text(
            "SELECT count(*) FILTER (WHERE broker_order_id IS NOT NULL AND status = ANY(:acknowledged)),"
            " count(*) FILTER (WHERE status = ANY(:failed)) FROM orders WHERE id = ANY(:ids)"
        ),
        {"acknowledged": list(ACKNOWLEDGED), "failed": list(FAILED), "ids": order_ids},
    ).one()
    return int(row[0]), int(row[1])


def _reader(engine: sa.Engine) -> sa.Connection:
    """A connection that sees every commit at once (autocommit)."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def paper_duplicates(engine: sa.Engine, order_ids: list[int]) -> dict[str, int]:
    """Our orders checked against the paper broker's book by client order id."""
    with _reader(engine) as connection:
        row = connection.execute(
            sa.text(
                "WITH ours AS (SELECT client_order_id, broker_order_id FROM orders WHERE id = ANY(:ids)),"
                " theirs AS (SELECT p.client_order_id, p.order_key FROM paper_orders p"
                "  JOIN ours ON ours.client_order_id = p.client_order_id)"
                " SELECT (SELECT count(*) FROM theirs),"
                " (SELECT count(*) - count(DISTINCT client_order_id) FROM theirs),"
                " (SELECT count(*) FROM ours WHERE client_order_id NOT IN (SELECT client_order_id FROM theirs)),"
                " (SELECT count(broker_order_id) - count(DISTINCT broker_order_id) FROM ours),"
                " (SELECT count(*) FROM ours JOIN theirs USING (client_order_id)"
                "  WHERE ours.broker_order_id IS DISTINCT FROM theirs.order_key)"
            ),
            {"ids": order_ids},
        ).one()
    at_broker, repeated, missing, shared_ids, mismatched = (int(value) for value in row)
    return {
        "broker_orders": at_broker,
        "duplicates": repeated + shared_ids,
        "missing_at_broker": missing,
        "broker_id_mismatches": mismatched,
    }


def latency_summary(latencies_ms: list[float]) -> dict[str, float]:
    """p50, p99, mean and max of API answer times in milliseconds."""
    if not latencies_ms:
        return {}
    return {
        "p50": common.percentile(latencies_ms, 0.50),
        "p99": common.percentile(latencies_ms, 0.99),
        "mean": sum(latencies_ms) / len(latencies_ms),
        "max": max(latencies_ms),
    }
